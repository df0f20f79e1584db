"""sam2-matting: interactive video matting on SAM 2.

The model package: model building, LoRA matting adapters, lazy video I/O, the matte codec,
training and metrics. It never imports the web service.
"""

__version__ = "0.1.0"
