# facerec: the pipeline's environment. Mount your checkout of the project (git + DVC) at /app
# and the photo folders that params.yaml names, then the default command is `dvc repro`:
#
#   docker build -t facerec .                                   # CPU torch
#   docker build -t facerec:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD":/app -v "$PWD/../shared":/shared:ro facerec
#
# Other commands (PREFECT_API_URL: your Prefect server's API):
#   python -m flows.pipeline serve --project /app               # the schedule of flows/pipeline.py
#   prefect worker start --pool facerec --type process          # runs deployments on pool facerec
FROM python:3.11.14-slim-bookworm

# The PyTorch wheel index: CPU builds by default; a CUDA build with e.g. .../whl/cu130. It only
# picks the build (+cpu, +cu130) of torch and torchvision: their versions are pyproject.toml's pins.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# facerec/runtime/offline.py's defaults, set here too so that every tool in the image is offline from
# the start. For any --user (a uid without a passwd entry, HOME=/): Prefect's state in the
# project, as the README's Prefect steps keep it; matplotlib's cache in /tmp; USER for
# getpass.getuser(), which DVC calls and which fails on such a uid.
ENV DVC_NO_ANALYTICS=1 \
    DVC_STUDIO_OFFLINE=true \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    YOLO_VERBOSE=False \
    HF_HUB_OFFLINE=1 \
    GX_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/app/.prefect \
    MPLCONFIGDIR=/tmp/matplotlib \
    USER=facerec \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# git: DVC needs it for `dvc repro`; libgl1, libglib2.0-0: opencv-python loads them.
# Not pinned: the base image's tag fixes the Debian release, and Debian drops superseded
# package versions from its mirrors, so exact pins would break rebuilds after a security update.
# safe.directory: a mounted checkout belongs to a host user, which git otherwise refuses.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /app \
    && useradd --create-home --uid 1000 facerec

WORKDIR /app

# The README's install command, less the test-only parts (chromium, the dev extra):
# every version comes from pyproject.toml and requirements-nodeps.txt.
COPY pyproject.toml README.md requirements-nodeps.txt ./
COPY facerec/ facerec/
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" './[peers]' \
    && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt

COPY . .

USER 1000
CMD ["dvc", "repro"]
