# syntax=docker/dockerfile:1
# The one image of genomhub's five services, its CLI and the migration Job:
#   docker build -t genomhub:0.1.0 .
#   docker run --rm genomhub:0.1.0 run receiver
# Bookworm, like the machines the project is developed and tested on, so the Debian
# bioinformatics tools are the same versions the tests ran against.
#
# Two stages: `build` has the compiler and turns the project (with the validator's C FASTQ
# scanner, services/validator/_fastq_scan.c, an `ext-modules` entry of pyproject.toml) and
# every pinned dependency into wheels; the runtime stage installs only those wheels, so it
# carries the built module and no compiler, and what runs is exactly what the wheel ships
# (migrations, reference tables, schemas: pyproject's package-data), never the source tree.

FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
# Not tools/: the local stack (broker, Jaeger, supervisor, demo) is a checkout's, not a pod's,
# so the wheel built here has neither it nor its commands.
# The project's wheel and one wheel per dependency, at the versions constraints.txt pins
# (a dependency without a binary wheel is compiled here too).
RUN pip wheel -c constraints.txt --wheel-dir /wheels .


FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The tools nf-core/sarek runs, which the validator and the local harmoniser backend call.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bwa samtools bcftools tabix minimap2 \
    && rm -rf /var/lib/apt/lists/*

# From the build stage's wheels only (--no-index): nothing is fetched or compiled here. The
# wheels are bind-mounted, not copied, so they add no layer to the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=constraints.txt,target=/constraints.txt \
    pip install --no-index --find-links /wheels -c /constraints.txt genomhub

# Non-root, with a numeric uid so Kubernetes' runAsNonRoot can verify it. The root
# filesystem is read-only in Kubernetes: state and caches go to /tmp (an emptyDir there).
RUN groupadd --gid 10001 genomhub \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin genomhub
USER 10001:10001
ENV HOME=/tmp \
    GENOMHUB_HOME=/tmp/genomhub \
    GENOMHUB_CACHE=/tmp/genomhub-cache \
    GENOMHUB_HTTP_HOST=0.0.0.0
WORKDIR /tmp

ENTRYPOINT ["genomhub"]
CMD ["--help"]
