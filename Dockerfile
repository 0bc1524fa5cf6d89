# Multi-stage image: the PKCS#11 module with its own virtual environment, for a consumer
# container to copy from or to use as a base. Config goes to /etc/nitrokey/p11nethsm.conf.
# The module embeds the CPython it is built with: PYTHON_VERSION (3.11, 3.12, 3.13) picks it.
#   docker build -t p11nethsm .
#   docker build --build-arg PYTHON_VERSION=3.11 -t p11nethsm:py3.11 .
#   docker run --rm -v "$PWD/p11nethsm.conf:/etc/nitrokey/p11nethsm.conf:ro" p11nethsm \
#       pkcs11-tool --module /opt/p11nethsm/module/libnethsm_pkcs11.so -L

ARG PYTHON_VERSION=3.13

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY libshim ./libshim
COPY p11nethsm ./p11nethsm
RUN python -m venv /opt/p11nethsm/venv \
 && /opt/p11nethsm/venv/bin/pip install --no-cache-dir . \
 && mkdir -p /opt/p11nethsm/module \
 && ln -s "$(/opt/p11nethsm/venv/bin/p11nethsm module-path)" /opt/p11nethsm/module/libnethsm_pkcs11.so

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends opensc p11-kit \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/nitrokey /etc/pkcs11/modules
COPY --from=build /opt/p11nethsm /opt/p11nethsm
RUN printf 'module: /opt/p11nethsm/module/libnethsm_pkcs11.so\n' > /etc/pkcs11/modules/p11nethsm.module
ENV P11NETHSM_MODULE=/opt/p11nethsm/module/libnethsm_pkcs11.so
USER 65534:65534
CMD ["pkcs11-tool", "--module", "/opt/p11nethsm/module/libnethsm_pkcs11.so", "--list-slots"]
