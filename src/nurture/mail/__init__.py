"""Email: templates, MIME messages, SMTP sending."""
