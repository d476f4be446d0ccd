"""Figure helpers, one module per concern; ``common`` holds the shared style."""
