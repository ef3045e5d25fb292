"""The HTTP edge shared by the Flask app and the WSGI fast path."""
