# The one image of genomhub's five services, its CLI and the migration Job:
#   docker build -t genomhub:0.1.0 .
#   docker run --rm genomhub:0.1.0 run receiver
# Bookworm, like the machines the project is developed and tested on, so the Debian
# bioinformatics tools are the same versions the tests ran against.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The tools nf-core/sarek runs, which the validator and the local harmoniser backend call.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bwa samtools bcftools tabix minimap2 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, pinned by constraints.txt, so a code change reuses this layer.
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
# gcc builds the validator's C FASTQ scanner (services/validator/_fastq_scan.c); it is
# removed in the same layer, so the image carries the built module and no compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install -c constraints.txt . \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* /app/build

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
