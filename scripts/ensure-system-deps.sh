#!/usr/bin/env bash
# Installs the system programs the tests talk to: nats-server (JetStream), GDAL (to check our
# GeoTIFFs) and Prometheus. As root it uses apt-get; otherwise it says what to install.
set -u
need=()
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v gdalinfo >/dev/null 2>&1 || need+=(gdal-bin)
/usr/bin/python3 -c 'from osgeo import gdal' >/dev/null 2>&1 || need+=(python3-gdal)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} from Debian..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { echo "could not install ${need[*]}" >&2; exit 1; }
else
  echo "the tests need these Debian packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
