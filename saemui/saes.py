"""SAE loading: sae-lens registry releases, sae-lens directories and saemui bundles, behind one loader.

Specs accepted by :func:`open_suite`:
- a saemui bundle directory (``manifest.json``, one sae-lens directory per layer, e.g. ``saes/…``);
- a sae-lens directory (``cfg.json`` + ``sae_weights.safetensors``) or a directory of such directories;
- ``RELEASE`` (per layer the SAE whose average L0 is closest to ``target_l0``), ``RELEASE:SAE_ID`` or
  ``RELEASE:SAE_ID,SAE_ID,…`` from the sae-lens registry (weights need the Hub: online users only).

The bundle format (``manifest.json``) is written by :func:`write_bundle_manifest` and read by :func:`open_suite`,
both here.

A suite is lazy: SAEs are loaded a group at a time by the engine, and ``encoder_only`` reads no decoder weights
from local files, so peak memory is the model plus a fixed number of encoders. Every SAE passes
:func:`check_compatible` before it encodes anything.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saemui.bundles import bundle_search_paths, find_bundles  # noqa: F401  (re-exported: their former home)
from saemui.capture import parse_site
from saemui.errors import SaemuiError
from saemui.io import atomic_write_json
from saemui.models import sha256_file
from saemui.readers import check_finite_tensors, check_sae_files, checked_field, read_json, type_name

BUNDLE_FORMAT = "saemui-sae-bundle/1"
#: files of one SAE directory whose sha256 a bundle manifest records (and open_suite verifies)
BUNDLE_FILES = ("cfg.json", "sae_weights.safetensors")
# TransformerLens processing flags: an SAE trained with any of these on expects processed activations.
_PROCESSING_FLAGS = (
    "center_writing_weights",
    "fold_ln",
    "center_unembed",
    "fold_value_biases",
    "refactor_factored_attn_matrices",
)


@dataclass
class SAEEntry:
    """One SAE of a suite, not yet loaded.

    layer/hook_name: where it reads (hook_name is confirmed against the SAE's own config on load).
    sae_id: provenance string (path or release/id). load: returns a sae-lens SAE on the given device/dtype.
    """

    layer: int
    hook_name: str
    sae_id: str
    load: Callable[[str, str, bool], object]
    meta: dict = field(default_factory=dict)


@dataclass
class SAESuite:
    """A named set of SAEs over layers (one per layer), loaded lazily."""

    name: str
    entries: list[SAEEntry]
    source: dict = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return [e.layer for e in self.entries]


def load_sae_dir(path: Path, device: str = "cpu", dtype: str = "float32", encoder_only: bool = False):
    """Load a sae-lens directory; with ``encoder_only`` skip the decoder matrix (not needed to encode)."""
    from sae_lens import SAE

    path = Path(path)
    for f in ("cfg.json", "sae_weights.safetensors"):
        if not (path / f).is_file():
            raise SaemuiError(f"{path}: missing {f} (expected a sae-lens SAE directory)")
    check_sae_files(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if not encoder_only:
                sae = SAE.load_from_disk(path, device=device, dtype=dtype)
            else:
                sae = _load_encoder_only(path, device, dtype)
        check_finite_tensors(sae.state_dict(), str(path / "sae_weights.safetensors"))
        return sae
    except SaemuiError:
        raise
    except Exception as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())[:300]
        raise SaemuiError(f"{path}: could not load SAE ({type(e).__name__}: {detail})") from None


def _load_encoder_only(path: Path, device: str, dtype: str):
    from sae_lens import SAE
    from sae_lens.loading.pretrained_sae_loaders import (
        get_sae_lens_config_from_disk,
        handle_config_defaulting,
    )
    from sae_lens.util import str_to_dtype
    from safetensors import safe_open

    cfg_dict = handle_config_defaulting(get_sae_lens_config_from_disk(path, device, {"dtype": dtype}))
    cfg_cls = SAE.get_sae_config_class_for_architecture(cfg_dict["architecture"])
    cfg = cfg_cls.from_dict(cfg_dict)
    needs_dec = bool(cfg_dict.get("rescale_acts_by_decoder_norm"))
    sae_cls = SAE.get_sae_class_for_architecture(cfg.architecture())
    cfg.device = "meta"
    sae = sae_cls(cfg)
    cfg.device = device
    state = {}
    with safe_open(str(path / "sae_weights.safetensors"), framework="pt", device=device) as f:
        for k in f.keys():  # noqa: SIM118
            if k == "W_dec" and not needs_dec:
                # load_state_dict checks shapes even with assign=True, so the placeholder needs W_dec's shape:
                # a zero-stride view of one scalar has it and holds no memory; encode never reads it here.
                state[k] = torch.zeros((), dtype=str_to_dtype(dtype), device=device).expand(
                    cfg.d_sae, cfg.d_in
                )
                continue
            state[k] = f.get_tensor(k).to(str_to_dtype(dtype))
    sae.load_state_dict(state, assign=True, strict=True)
    return sae.to(dtype=str_to_dtype(dtype), device=device)


def _local_entry(path: Path, meta: dict | None = None) -> SAEEntry:
    cfg_path = path / "cfg.json"
    cfg = read_json(cfg_path, dict, "SAE config (cfg.json)")
    md = cfg.get("metadata") or {}
    if not isinstance(md, dict):
        raise SaemuiError(f"{cfg_path}: field 'metadata' must be a JSON object, got {type_name(md)}")
    hook = md.get("hook_name") or cfg.get("hook_name")
    if hook and not isinstance(hook, str):
        raise SaemuiError(f"{cfg_path}: field 'metadata.hook_name' must be a string, got {type_name(hook)}")
    if not hook:
        raise SaemuiError(
            f"{path / 'cfg.json'}: no metadata.hook_name (needed to know which activations it encodes)"
        )
    try:
        layer, _ = parse_site(hook)
    except SaemuiError as e:
        raise SaemuiError(f"{cfg_path}: {e}") from None
    return SAEEntry(
        layer, hook, str(path), lambda dev, dt, enc, p=path: load_sae_dir(p, dev, dt, enc), meta or {}
    )


def _open_bundle(root: Path, verify: bool) -> SAESuite:
    mpath = root / "manifest.json"
    man = read_json(mpath, dict, "bundle manifest")
    if man.get("format") != BUNDLE_FORMAT:
        raise SaemuiError(f"{mpath}: field 'format' is {man.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    entries = []
    saes = man.get("saes") or []
    if not isinstance(saes, list):
        raise SaemuiError(f"{mpath}: field 'saes' must be a JSON array, got {type_name(saes)}")
    for i, s in enumerate(saes):
        if not isinstance(s, dict):
            raise SaemuiError(f"{mpath}: saes[{i}] must be a JSON object, got {type_name(s)}")
        for key, types in (("layer", int), ("hook_name", str), ("path", str)):
            if key not in s:
                raise SaemuiError(f"{mpath}: saes[{i}] lacks field {key!r}")
            checked_field(s, key, types, f"{mpath}: saes[{i}]")
        if "\x00" in s["path"] or any("\x00" in str(k) for k in s.get("files") or {}):
            raise SaemuiError(f"{mpath}: saes[{i}] holds a path with a NUL character")
        if not isinstance(s.get("files") or {}, dict):
            raise SaemuiError(f"{mpath}: saes[{i}].files must be a JSON object of file name -> sha256")
        # Paths from files are not trusted: stay inside the bundle.
        sub = (root / s["path"]).resolve()
        if root.resolve() not in sub.parents:
            raise SaemuiError(f"{mpath}: saes[{i}].path {s['path']!r} points outside the bundle")
        if verify:
            for fname, digest in (s.get("files") or {}).items():
                f = (sub / fname).resolve()
                if sub not in f.parents:
                    raise SaemuiError(
                        f"{mpath}: saes[{i}].files name {fname!r} points outside its SAE directory"
                    )
                if not f.is_file():
                    raise SaemuiError(f"{f}: listed in {mpath} but missing")
                if sha256_file(f) != digest:
                    raise SaemuiError(f"{f}: sha256 differs from {mpath} (corrupt or modified file)")
        e = _local_entry(sub, meta=s)
        if e.hook_name != s["hook_name"] or e.layer != s["layer"]:
            raise SaemuiError(
                f"{sub / 'cfg.json'}: hook {e.hook_name!r} disagrees with {mpath} ({s['hook_name']!r})"
            )
        entries.append(e)
    if not entries:
        raise SaemuiError(f"{mpath}: field 'saes' is empty")
    return SAESuite(
        man.get("name", root.name),
        sorted(entries, key=lambda e: e.layer),
        {"kind": "bundle", "path": str(root), "manifest": {k: v for k, v in man.items() if k != "saes"}},
    )


def bundle_entry(root: Path, layer: int, hook_name: str, subdir: str, **spec: Any) -> dict[str, Any]:
    """One ``saes[]`` row of a bundle manifest: the SAE's layer and hook, its directory under ``root``, free
    descriptive fields (architecture, d_in, d_sae, …) and the sha256 of its :data:`BUNDLE_FILES`."""
    return {
        "layer": layer,
        "hook_name": hook_name,
        "path": subdir,
        **spec,
        "files": {f: sha256_file(Path(root) / subdir / f) for f in BUNDLE_FILES},
    }


def write_bundle_manifest(
    root: Path, name: str, model: dict, hook_template: str, saes: list[dict], **extra: Any
) -> dict[str, Any]:
    """Write ``root/manifest.json`` atomically (``saes`` from :func:`bundle_entry`; ``extra`` keys follow, in
    order, e.g. training details) and return the manifest."""
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": name,
        "model": model,
        "hook_template": hook_template,
        "saes": saes,
        **extra,
    }
    atomic_write_json(Path(root) / "manifest.json", manifest)
    return manifest


_LAYER_PATTERNS = [
    re.compile(p) for p in (r"layer_(\d+)", r"^l(\d+)[a-z]", r"blocks\.(\d+)\.", r"layer(\d+)", r"^(\d+)-")
]
_L0_PATTERN = re.compile(r"l0_(\d+)")


def registry_layer(sae_id: str) -> int | None:
    for p in _LAYER_PATTERNS:
        m = p.search(sae_id)
        if m:
            return int(m.group(1))
    return None


def registry_l0(lookup, sae_id: str) -> float | None:
    m = _L0_PATTERN.search(sae_id)
    if m:
        return float(m.group(1))
    v = (lookup.expected_l0 or {}).get(sae_id)
    return float(v) if v else None


def select_closest_l0(lookup, target_l0: float = 50.0, contains: str | None = None) -> dict[int, str]:
    """Per layer, the id whose average L0 is closest to ``target_l0`` (the paper's Gemma Scope rule).

    Ties (e.g. Gemma Scope 9B layer 16: 35 vs 65) go to the lower L0, then the lexically smaller id, so the
    choice never depends on directory order (official-code bug 15).
    """
    best: dict[int, tuple[float, float, str]] = {}
    for sid in lookup.saes_map:
        if contains and contains not in sid:
            continue
        layer, l0 = registry_layer(sid), registry_l0(lookup, sid)
        if layer is None or l0 is None:
            continue
        key = (abs(l0 - target_l0), l0, sid)
        if layer not in best or key < best[layer]:
            best[layer] = key
    return {layer: v[2] for layer, v in sorted(best.items())}


def _registry_suite(spec: str, target_l0: float, contains: str | None) -> SAESuite:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release, _, ids = spec.partition(":")
    directory = get_pretrained_saes_directory()
    if release not in directory:
        import difflib

        close = difflib.get_close_matches(release, list(directory), n=5, cutoff=0.5)
        raise SaemuiError(
            f"SAE release {release!r} is not in the sae-lens registry (similar: {', '.join(close) or 'none'})"
        )
    lookup = directory[release]
    if ids:
        chosen = {}
        for sid in ids.split(","):
            if sid not in lookup.saes_map:
                raise SaemuiError(
                    f"SAE id {sid!r} is not in release {release!r} ({len(lookup.saes_map)} ids; e.g. {next(iter(lookup.saes_map))!r})"
                )
            layer = registry_layer(sid)
            if layer is None:
                raise SaemuiError(f"SAE id {sid!r}: cannot tell its layer from the id")
            chosen[layer] = sid
    else:
        chosen = select_closest_l0(lookup, target_l0, contains)
        if not chosen:
            raise SaemuiError(
                f"release {release!r}: no ids with a known layer and L0 to choose from; pass RELEASE:SAE_ID"
            )

    def loader(dev, dt, enc, sid):
        from sae_lens import SAE

        try:
            sae = SAE.from_pretrained(release, sid, device=dev, dtype=dt)
        except Exception as e:  # network, auth, missing file: report one line
            raise SaemuiError(
                f"could not download SAE {release}:{sid} ({type(e).__name__}; offline? weights live on the Hugging Face Hub)"
            ) from None
        check_finite_tensors(sae.state_dict(), f"SAE {release}:{sid}")
        return sae

    entries = []
    for layer, sid in chosen.items():
        entries.append(
            SAEEntry(
                layer,
                f"blocks.{layer}.hook_resid_post",
                f"{release}:{sid}",
                lambda dev, dt, enc, sid=sid: loader(dev, dt, enc, sid),
                {
                    "neuronpedia_id": (lookup.neuronpedia_id or {}).get(sid),
                    "registry_l0": registry_l0(lookup, sid),
                    "hook_from_registry": False,
                },
            )
        )
    return SAESuite(
        release,
        entries,
        {
            "kind": "sae-lens-registry",
            "release": release,
            "repo_id": lookup.repo_id,
            "model": lookup.model,
            "ids": {str(k): v for k, v in chosen.items()},
            "config_overrides": lookup.config_overrides,
        },
    )


_VARIANT_SUFFIXES = ("-instruct", "-chat", "-base", "-deduped", "-it", "-pt", "-small")


def _model_base(name: str) -> str:
    """``"google/gemma-2-2b-it"`` → ``"gemma-2-2b"``: the checkpoint family an SAE can be shared within (SAEs
    trained on a base model are routinely applied to its instruct variant)."""
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in _VARIANT_SUFFIXES:
        base = base.removesuffix(suffix)
    return base


def check_suite_for_model(suite: SAESuite, model_names: list[str], n_layers: int) -> None:
    """Refuse a sae-lens registry release made for another model from its registry metadata alone, before any
    weights are downloaded: layers the model does not have, or a model family that differs from the model's
    (d_in would not match). Skipped for names that are local paths (a local copy can carry any name); the
    per-SAE :func:`check_compatible` still runs on the loaded weights."""
    if suite.source.get("kind") != "sae-lens-registry":
        return
    release, trained_on = suite.source.get("release"), suite.source.get("model")
    beyond = sorted(e.layer for e in suite.entries if e.layer >= n_layers)
    if beyond:
        raise SaemuiError(
            f"SAE release {release!r} (for {trained_on}) has SAEs at layer(s) {beyond}, the model has {n_layers} "
            "layers: a release for another model"
        )
    hub_names = [n for n in model_names if n and "/" in n and not Path(n).exists()]
    if trained_on and hub_names:
        want = _model_base(trained_on)
        if not any(_model_base(n).startswith(want) or want.startswith(_model_base(n)) for n in hub_names):
            raise SaemuiError(
                f"SAE release {release!r} was trained on {trained_on}, not {hub_names[0]} (its d_in and layers "
                "belong to that model); choose a release for this model"
            )


def open_suite(
    spec: str | Path, target_l0: float = 50.0, contains: str | None = None, verify: bool = True
) -> SAESuite:
    """Resolve an SAE spec (see module docstring) without loading weights."""
    path = Path(spec)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return _open_bundle(path, verify)
        if (path / "cfg.json").is_file():
            e = _local_entry(path)
            return SAESuite(path.name, [e], {"kind": "sae-lens-dir", "path": str(path)})
        subs = sorted(p for p in path.iterdir() if (p / "cfg.json").is_file())
        if not subs:
            raise SaemuiError(
                f"{path}: no manifest.json, cfg.json or SAE subdirectories (expected an SAE bundle or sae-lens directory)"
            )
        entries = sorted((_local_entry(p) for p in subs), key=lambda e: e.layer)
        return SAESuite(path.name, entries, {"kind": "sae-lens-dirs", "path": str(path)})
    if path.exists() or str(spec).startswith((".", "/", "~")):
        what = "not a directory" if path.exists() else "no such directory"
        raise SaemuiError(f"{spec}: {what} (expected an SAE bundle, a sae-lens directory, or RELEASE[:ID])")
    return _registry_suite(str(spec), target_l0, contains)


def check_compatible(
    sae, entry: SAEEntry, d_model: int, d_mlp: int, n_layers: int, allow_processing_mismatch: bool = False
) -> None:
    """Refuse SAEs that would silently give wrong features on saemui's activations."""
    md = sae.cfg.metadata
    hook = md.hook_name  # SAEMetadata returns None for a missing key rather than raising
    if not hook:
        raise SaemuiError(
            f"SAE {entry.sae_id}: config metadata has no hook_name (cannot tell which activations it encodes)"
        )
    layer, kind = parse_site(hook)
    if not 0 <= layer < n_layers:
        raise SaemuiError(f"SAE {entry.sae_id}: hook {hook!r} names layer {layer}, the model has {n_layers}")
    if hook != entry.hook_name and entry.meta.get("hook_from_registry", True):
        raise SaemuiError(
            f"SAE {entry.sae_id}: its config says hook {hook!r}, the suite expected {entry.hook_name!r}"
        )
    entry.hook_name, entry.layer = hook, layer
    want = d_mlp if kind in ("mlp_post", "gate_act") else d_model
    if sae.cfg.d_in != want:
        raise SaemuiError(
            f"SAE {entry.sae_id}: d_in={sae.cfg.d_in} but {hook} has width {want} (SAE trained for another model?)"
        )
    kwargs = md.model_from_pretrained_kwargs or {}
    processed = sorted(k for k in _PROCESSING_FLAGS if kwargs.get(k))
    if processed and not allow_processing_mismatch:
        raise SaemuiError(
            f"SAE {entry.sae_id}: trained on TransformerLens-processed activations ({', '.join(processed)}); saemui captures "
            "raw Hugging Face activations, so its features would be wrong (allow_processing_mismatch overrides)"
        )
    if not torch.is_floating_point(next(iter(sae.parameters()))):
        raise SaemuiError(f"SAE {entry.sae_id}: weights are not floating point")
