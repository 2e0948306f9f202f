"""How many tags a category returns per recipe: the one home of these numbers."""

# The largest k a category, a tagging request, a fit or an evaluation may ask for.
MAX_TAGS_PER_CATEGORY = 20
# A category's k when neither it nor the request sets one; also the k a fit and an evaluation use.
DEFAULT_TAGS_PER_CATEGORY = 3
