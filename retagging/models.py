"""Re-tagging jobs that keep recipes' current tags up to date when what decided them has moved on."""
