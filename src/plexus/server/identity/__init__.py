"""Identity: a built-in Keystone v3 subset, signed tokens, and request authentication."""
