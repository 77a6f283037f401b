"""CLI for model bundles: ``segstream promote`` and ``segstream bundle verify|list``.

The signing key comes from the model settings (``ModelSettings.signing_key``); the expected feature hash
from the running code's feature spec, so a bundle trained on other features is refused here as well as
in the worker. ``promote`` defaults to the models root the worker watches (``ModelSettings.root``, i.e.
``SEGSTREAM_MODEL_ROOT``), so a promoted bundle is one the worker will actually find.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from segstream.models.errors import BundleError

_DIR = click.Path(path_type=Path, file_okay=False)


def _model_settings() -> Any | None:
    """The model settings, or ``None`` without a settings module."""
    try:
        from segstream.settings import ModelSettings
    except ImportError:
        return None
    try:
        return ModelSettings()
    except Exception as exc:  # pydantic reports bad env values; say which concern failed
        raise BundleError(f"model settings (SEGSTREAM_ environment) are invalid: {exc}") from exc


def _configured_root() -> Path | None:
    """The models root the worker watches (``SEGSTREAM_MODEL_ROOT``), absolute; ``None`` without settings."""
    settings = _model_settings()
    root = getattr(settings, "root", None)
    return Path(root).absolute() if root is not None else None


def _signing_options() -> tuple[bytes | None, bool]:
    """The signing key and require-signature flag from settings; (None, False) without a settings module."""
    settings = _model_settings()
    if settings is None:
        return None, False
    secret = getattr(settings, "signing_key", None)
    key = secret.get_secret_value().encode("utf-8") if secret is not None else None
    return key or None, bool(getattr(settings, "require_signature", False))


def _feature_hash(skip: bool, bundle_dir: Path) -> str | None:
    """This code's feature hash for what the bundle reads (behaviour features, and any attributes or
    preferences its manifest names): equal to the bundle's only if this code computes them the same way."""
    if skip:
        return None
    from segstream.models.bundle import read_manifest
    from segstream.models.features import FeatureSpec

    return FeatureSpec.for_manifest(read_manifest(bundle_dir).feature_spec).hash


_skip_feature_check = click.option(
    "--skip-feature-check",
    is_flag=True,
    help="Do not compare the bundle's feature spec hash with this code's (for inspecting old bundles).",
)


@click.command("promote")
@click.argument("bundle_dir", type=_DIR)
@click.option(
    "--models-root",
    type=_DIR,
    default=None,
    help="Directory holding the 'current' pointer. Default: the worker's models root (SEGSTREAM_MODEL_ROOT).",
)
@click.option(
    "--copy",
    is_flag=True,
    help="Copy a bundle from outside the models root into it instead of symlinking it (use when the worker "
    "cannot see BUNDLE_DIR, e.g. it runs in another container or host).",
)
@_skip_feature_check
def promote_cmd(bundle_dir: Path, models_root: Path | None, copy: bool, skip_feature_check: bool) -> None:
    """Verify BUNDLE_DIR and atomically point <models-root>/current at it.

    A bundle outside the models root is made reachable there first, as <models-root>/<BUNDLE_DIR name>: a
    symlink to it, or a copy with --copy. The stream worker hot-reloads the new bundle. A bundle that fails
    verification is refused and the current pointer is left as it was (exit code 2). Old bundles are kept:
    roll back by promoting one.
    """
    from segstream.models.bundle import promote

    key, required = _signing_options()
    configured = _configured_root()
    root = models_root if models_root is not None else configured
    result = promote(
        bundle_dir,
        root,
        expected_feature_hash=_feature_hash(skip_feature_check, bundle_dir),
        signing_key=key,
        require_signature=required,
        copy=copy,
    )
    if result.placement == "linked":
        click.echo(f"linked:   {result.entry} -> {bundle_dir.resolve()}")
    elif result.placement == "copied":
        click.echo(f"copied:   {bundle_dir.resolve()} -> {result.entry}")
    click.echo(f"previous: {result.previous or '(none)'}")
    click.echo(f"current:  {result.version}  ({result.path})")
    click.echo(f"the worker finds it at {result.root}/current -> {result.path}")
    # Promoting into one root while the worker watches another is the mistake this default exists to
    # prevent; with an explicit --models-root say so rather than leave the worker waiting silently.
    if configured is not None and result.root is not None and configured.resolve() != result.root:
        click.echo(
            f"note: the worker watches SEGSTREAM_MODEL_ROOT={configured}, not {result.root}; "
            "set it to this root or promote without --models-root"
        )


@click.group("bundle")
def bundle_group() -> None:
    """Inspect model bundles."""


@bundle_group.command("verify")
@click.argument("bundle_dir", type=_DIR)
@_skip_feature_check
def verify_cmd(bundle_dir: Path, skip_feature_check: bool) -> None:
    """Check BUNDLE_DIR (manifest, hashes, signature, feature spec, sklearn version) without loading it."""
    from segstream.models.bundle import verify_bundle

    key, required = _signing_options()
    manifest = verify_bundle(
        bundle_dir,
        expected_feature_hash=_feature_hash(skip_feature_check, bundle_dir),
        signing_key=key,
        require_signature=required,
    )
    names = ", ".join(sorted(manifest.artifacts))
    click.echo(f"ok: {bundle_dir} version {manifest.version}, artifacts: {names}")


@bundle_group.command("list")
@click.argument("models_root", type=_DIR)
def list_cmd(models_root: Path) -> None:
    """List the bundles under MODELS_ROOT, oldest first; '*' marks the current one."""
    from segstream.models.bundle import list_bundles

    for entry in list_bundles(models_root):
        mark = "*" if entry.is_current else " "
        if entry.manifest is None:
            click.echo(f"{mark} {entry.path.name}  BROKEN: {entry.error}")
        else:
            m = entry.manifest
            names = ", ".join(sorted(m.artifacts))
            click.echo(f"{mark} {m.version}  created {m.created_at}  artifacts: {names}")


COMMANDS = [promote_cmd, bundle_group]
