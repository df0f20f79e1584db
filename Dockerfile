# sam2-matting for a CUDA host (see docs/deployment.md).
#
#   docker build -t sam2-matting .
#   docker run --gpus all -p 7263:7263 -v sam2-checkpoints:/app/checkpoints sam2-matting
#
# The devel base image has nvcc, so SAM 2's CUDA extension (connected components, used to fill
# small holes in masks) is built here. No GPU is visible during `docker build`, hence the
# explicit TORCH_CUDA_ARCH_LIST: Volta to Hopper, plus PTX for newer GPUs.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel

ARG TORCH_CUDA_ARCH_LIST="7.0;7.5;8.0;8.6;8.9;9.0+PTX"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Pin the base image's torch: no later `pip install` may replace it (a CUDA build of another
# version, or a CPU build, would break the extension and the GPU).
RUN python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" \
        > /etc/pip-constraints.txt \
    && cat /etc/pip-constraints.txt
ENV PIP_CONSTRAINT=/etc/pip-constraints.txt

# SAM 2 without its dependencies (they would pull another torch and torchvision, which the video
# predictor never imports), built against the installed torch; fail if the extension fails.
RUN SAM2_BUILD_CUDA=1 SAM2_BUILD_ALLOW_ERRORS=0 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" \
        pip install --no-deps --no-build-isolation sam2==1.1.0 \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('sam2._C') is None)"

WORKDIR /app

# The project (not editable). Dependencies first would cache better, but they are read from
# pyproject.toml, which needs the sources to build; torch stays the base image's (constraint).
COPY pyproject.toml README.md ./
COPY sam2_matting ./sam2_matting
COPY server ./server
RUN pip install . \
    && python -c "import torch, sam2, sam2_matting, server.app; print('torch', torch.__version__)" \
    && rm -rf /app/build /app/*.egg-info

# A non-root user owns the writable folders; named volumes start from their content.
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin sam2 \
    && mkdir -p /app/checkpoints /app/data /app/gallery \
    && chown -R sam2:sam2 /app/checkpoints /app/data /app/gallery
COPY --chown=sam2:sam2 gallery/ /app/gallery/
USER sam2

# Relative defaults resolve under /app: checkpoints/, data/, gallery/ (`sam2-matting download`
# writes to ./checkpoints too).
VOLUME ["/app/checkpoints", "/app/data", "/app/gallery"]
EXPOSE 7263
ENV SAM2_MATTING_DEVICE=cuda

# /ready answers 200 once the model is loaded (loading the large model takes a while).
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('SAM2_MATTING_PORT', '7263'), timeout=5)"]

# gunicorn becomes PID 1 (serve execs it) and drains streams for SAM2_MATTING_GRACEFUL_TIMEOUT
# seconds on SIGTERM; give `docker stop` a longer timeout (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sam2-matting"]
CMD ["serve", "--host", "0.0.0.0"]
