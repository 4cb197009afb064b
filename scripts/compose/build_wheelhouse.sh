#!/usr/bin/env bash
# Fills build/wheelhouse with a wheel for every package the cxrq image installs (the project's
# dependencies, Flower, torch/torchvision and the build backend), so that
# `docker build --build-arg PIP_OFFLINE=1 .` needs no package index: for air-gapped hospital
# networks, run this where an index (or a local mirror) is reachable and carry the folder over.
#
#   scripts/compose/build_wheelhouse.sh             # TORCH="torch==2.14.1 torchvision==0.29.1"
#   TORCH="torch==2.13.0+cpu torchvision==0.28.0" scripts/compose/build_wheelhouse.sh
#
# The wheels must fit the image's Python (3.11, Linux x86_64), so PYTHON must be a 3.11 on
# Linux x86_64 (default: .venv/bin/python, else python3.11). pip's own configuration (index,
# find-links, proxy) applies. A rerun with the same requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."

TORCH=${TORCH:-torch==2.14.1 torchvision==0.29.1}
OUT=${WHEELHOUSE:-build/wheelhouse}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3.11; fi
fi
"$PYTHON" - <<'EOF'
import platform, sys
if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64" or sys.platform != "linux":
    sys.exit(f"{sys.executable} is Python {platform.python_version()} on {sys.platform} "
             f"{platform.machine()}; the image needs wheels for 3.11 on linux x86_64")
EOF

# The requirements, read from pyproject.toml so this list never drifts from it.
mkdir -p "$OUT"
reqs=$OUT/requirements.txt
{
  "$PYTHON" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
build = tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]
for req in [*project["dependencies"], *project["optional-dependencies"]["flower"], *build]:
    print(req)
EOF
  echo wheel
  tr ' ' '\n' <<<"$TORCH"
} >"$reqs.new"

# Done before for the same requirements and the same steps (this script): nothing to do.
key=$(cat "$reqs.new" "$0" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$OUT/.complete" 2>/dev/null)" = "$key" ]; then
  rm "$reqs.new"
  echo "$OUT is up to date ($(du -sh "$OUT" | cut -f1))"
  exit 0
fi
mv "$reqs.new" "$reqs"
rm -f "$OUT/.complete"
# `pip wheel` rather than `pip download`: a package published only as source is built here, so
# the image build never needs a compiler.
"$PYTHON" -m pip wheel --quiet --wheel-dir "$OUT" -r "$reqs"
# pip decided environment markers for this Python only. Another 3.11 can need more: redis wants
# async-timeout below 3.11.3, and Debian's python3 is 3.11.2. So every wheel's requirements are
# read again for the first and a late 3.11 release, and what is missing is added, until nothing is.
missing() {
  "$PYTHON" - "$OUT" <<'EOF'
import sys, zipfile
from pathlib import Path
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

wheels = list(Path(sys.argv[1]).glob("*.whl"))
have = {parse_wheel_filename(w.name)[0] for w in wheels}
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        # Requirements of an extra (marker `extra == ...`) were resolved by pip already.
        if not req.marker or "extra" in str(req.marker):
            continue
        if canonicalize_name(req.name) in have:
            continue
        for full in ("3.11.0", "3.11.99"):
            if req.marker.evaluate({"python_full_version": full, "python_version": "3.11"}):
                print(f"{req.name}{req.specifier}")
                break
EOF
}
while extra=$(missing | sort -u) && [ -n "$extra" ]; do
  echo "for other 3.11 releases: $(echo "$extra" | tr '\n' ' ')"
  # shellcheck disable=SC2086  # one requirement per word
  "$PYTHON" -m pip wheel --quiet --wheel-dir "$OUT" --find-links "$OUT" $extra
done
echo "$key" >"$OUT/.complete"
echo "$OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
