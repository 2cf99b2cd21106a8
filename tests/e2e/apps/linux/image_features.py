"""Image methods beyond the basic chain (tests/e2e/test_images.py), one image per variant, observed from inside
the function. The test picks the variant and hands it local paths and values through the environment:

  COVE_TEST_VARIANT   which image to build (see below)
  COVE_TEST_PROBE     JSON: what the function reports ({"read": [...], "env": [...], "import": [...],
                      "exists": [...], "mode": [...], "listdir": [...]})
  COVE_TEST_*         the variant's inputs (a requirements.txt, a pyproject.toml, files, a secret value...)
"""

import importlib
import json
import os
import stat
from pathlib import Path

import modal

VARIANT = os.environ.get("COVE_TEST_VARIANT", "requirements")
IN = os.environ.get


def _image() -> modal.Image:
    base = modal.Image.debian_slim()
    if VARIANT == "requirements":
        return base.pip_install_from_requirements(IN("COVE_TEST_REQUIREMENTS", "/nonexistent"))
    if VARIANT == "pyproject":
        return base.pip_install_from_pyproject(IN("COVE_TEST_PYPROJECT", "/nonexistent"),
                                               optional_dependencies=["extra"])
    if VARIANT == "pip_options":
        # --target puts six where only these options would: proof that index_url and extra_options reached pip.
        return base.pip_install(
            "six",
            index_url="https://pypi.org/simple",
            extra_options="--target /opt/cove-pip-target --no-compile",
        )
    if VARIANT == "files":
        return (
            base.add_local_file(IN("COVE_TEST_FILE", "/nonexistent"), "/opt/cove/file.txt", copy=True)
            .add_local_file(IN("COVE_TEST_SCRIPT", "/nonexistent"), "/opt/cove/", copy=True)
            .add_local_python_source("cove_imgsrc_copied", copy=True)
            # Build steps after copy=True layers see their files.
            .run_commands(
                "cat /opt/cove/file.txt > /opt/cove/seen-at-build",
                "cd /root && python -c 'import cove_imgsrc_copied as m; print(m.VALUE)' > /opt/cove/pysrc-at-build",
            )
            # Mounted at container start, not built in.
            .add_local_python_source("cove_imgsrc_mounted")
            .add_local_dir(IN("COVE_TEST_DIR", "/nonexistent"), "/srv/mounted")
        )
    if VARIANT == "env_entrypoint":
        return (
            base.add_local_file(IN("COVE_TEST_ENTRYPOINT", "/nonexistent"), "/usr/local/bin/cove-ep", copy=True)
            .env(json.loads(IN("COVE_TEST_ENV", "{}")))
            .run_commands('printf "%s|%s|%s" "$COVE_SPACES" "$COVE_DOLLAR" "$COVE_QUOTES" > /opt/env-at-build')
            .entrypoint(["/usr/local/bin/cove-ep"])
            .cmd(["/bin/false", "a CMD is for docker run, not for function containers"])
        )
    if VARIANT == "secret":
        return base.run_commands(
            f"echo $MY_SECRET > /opt/s  # {IN('COVE_TEST_NONCE', '')}",
            secrets=[modal.Secret.from_dict({"MY_SECRET": IN("COVE_TEST_SECRET", "unset")})],
        )
    if VARIANT == "force":
        nonce = IN("COVE_TEST_NONCE", "")
        return (
            # Each layer records when it was built: a rebuilt layer has a new time.
            base.run_commands(f"echo first-{nonce} $(date +%s%N) > /opt/first")
            .run_commands(f"echo middle-{nonce} $(date +%s%N) > /opt/middle",
                          force_build=IN("COVE_TEST_FORCE_MIDDLE") == "1")
            .run_commands(f"echo last-{nonce} $(date +%s%N) > /opt/last")
        )
    if VARIANT == "fail":
        return base.run_commands(f"echo cove-output-before-failing-{IN('COVE_TEST_NONCE', '')} && exit 3")
    if VARIANT == "dockerfile":
        return modal.Image.from_dockerfile(IN("COVE_TEST_DOCKERFILE", "/nonexistent"),
                                           context_dir=IN("COVE_TEST_CONTEXT", "/nonexistent"))
    if VARIANT == "micromamba":
        return modal.Image.micromamba(python_version="3.11")
    if VARIANT == "uv":
        # The nonce makes the steps after it build anew, so that their log shows.
        return base.env({"COVE_TEST_NONCE": IN("COVE_TEST_NONCE", "")}).uv_pip_install("six")
    if VARIANT == "uv_pinned":
        return base.env({"COVE_TEST_NONCE": IN("COVE_TEST_NONCE", "")}).uv_pip_install(
            "six", uv_version=IN("COVE_TEST_UV_VERSION", "0"))
    if VARIANT == "cext":
        # An sdist with a C extension, built in the image: needs the Python headers (Modal's base has them).
        here = Path(__file__).parent
        return base.add_local_dir(here / "cove_cext_pkg", "/src/cove_cext_pkg", copy=True).run_commands(
            f"pip install --no-build-isolation /src/cove_cext_pkg  # {IN('COVE_TEST_NONCE', '')}",
            "python -c 'import cove_cext; print(\"triple\", cove_cext.triple(14))'",
        )
    raise ValueError(f"unknown COVE_TEST_VARIANT {VARIANT!r}")


image = _image()
app = modal.App(f"linux-image-{VARIANT.replace('_', '-')}", image=image)


@app.function()
def probe(spec: dict) -> dict:
    out: dict = {"cwd": os.getcwd()}
    out["read"] = {}
    for p in spec.get("read", []):
        try:
            out["read"][p] = Path(p).read_text()
        except OSError as e:
            out["read"][p] = f"<{type(e).__name__}>"
    out["env"] = {k: os.environ.get(k) for k in spec.get("env", [])}
    out["exists"] = {p: os.path.exists(p) for p in spec.get("exists", [])}
    out["mode"] = {p: stat.S_IMODE(os.stat(p).st_mode) if os.path.exists(p) else None for p in spec.get("mode", [])}
    out["listdir"] = {
        p: sorted(str(f.relative_to(p)) for f in Path(p).rglob("*") if f.is_file()) if os.path.isdir(p) else None
        for p in spec.get("listdir", [])
    }
    out["import"] = {}
    for name in spec.get("import", []):
        try:
            m = importlib.import_module(name)
            out["import"][name] = {"file": getattr(m, "__file__", None), "value": getattr(m, "VALUE", None),
                                   "version": getattr(m, "__version__", None)}
        except ImportError as e:
            out["import"][name] = {"error": str(e)}
    return out


@app.local_entrypoint()
def main():
    print("RESULT=" + json.dumps(probe.remote(json.loads(os.environ.get("COVE_TEST_PROBE", "{}")))))
