"""Rendering: templates to HTML and text, MIME messages, previews and signed links."""
