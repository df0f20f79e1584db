"""sam2-matting web service: Flask + Strawberry GraphQL + a streaming propagation route.

``server.app.create_app(settings)`` builds the application; ``sam2-matting serve`` runs it under
gunicorn. The model is loaded once in ``create_app``, never at import.
"""
