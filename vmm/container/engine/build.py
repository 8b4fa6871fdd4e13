"""``pyvmm image build``: an image from a Containerfile, one layer per step that changes files.

A build is a walk down the Containerfile (``containerfile.py``) carrying what the
image is so far: its layers, its config, and a cache key. FROM starts from a stored
image (or from nothing: ``scratch``). ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT,
EXPOSE and LABEL change only the config. The steps that change files each add a
layer, as in Docker:

- RUN runs its command in a container of the engine (``container.create`` on the
  image so far, then ``start``, through the OCI core like any other), and the
  container's writable layer, its overlay ``upper`` directory, becomes the layer:
  written as a tar by the store's own writer (``unpack.tar_directory``, which turns
  overlayfs's whiteouts, a 0/0 character device and the opaque xattr, into the OCI
  ``.wh.`` entries), then unpacked into the store by the store's own extractor under
  the tar's digest, as an imported layer is. The container is removed.
- COPY and ADD write their layer tar themselves from the context
  (``buildcontext.py``): no container runs.

The build cache is Docker's: a step's key is its parent's key with the instruction
(and for COPY and ADD the copied files' contents, and for FROM the base image's id),
so a step is reused only when everything before it is; ``build-cache/<key>.json``
records the layer a RUN, COPY or ADD made, and a later build with the same key reuses
it instead of running the step again (``--no-cache``: never). The cache keeps no layer
alive: ``image rm`` collects layers no image names, and an entry whose layer is gone is
a miss.

The image is recorded as an imported one is (``importer.store_image``), so ``run``,
``push``, ``image ls`` and ``image rm`` treat it as any other; two images built on one
base name the same layers, stored once. A Containerfile with an error is refused,
with its line, before anything is made; a step that fails stops the build and leaves
no container (the layers of the steps before it stay, as Docker's cache).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmm.container.engine import container
from vmm.container.engine import containerfile as cf
from vmm.container.engine.buildcontext import Context, Copy, LayerWriter
from vmm.container.image import images, importer, unpack
from vmm.container.image.images import ImageRecord, RunDefaults
from vmm.container.store import layers, records
from vmm.container.store.names import split_image_ref
from vmm.container.store.records import Broken, Digest
from vmm.container.store.state import Store
from vmm.errors import PyvmmError

SCRATCH = "scratch"  # FROM scratch: an image with no layer


class BuildError(PyvmmError):
    """A step that failed (a RUN whose command did not succeed...): Docker's status 1."""

    exit_code = 1


@dataclass
class CacheRecord:
    """``build-cache/<key>.json``: the layer one RUN, COPY or ADD made."""

    layer: Digest


@dataclass
class _Image:
    """The image as far as the build has come."""

    layers: list[str]
    config: RunDefaults
    key: str
    variables: dict[str, str]  # ARGs declared since FROM, with their values
    cmd_set: bool = False  # a CMD of this Containerfile's (not the base's) was seen


def _chain(key: str, *parts: object) -> str:
    """The next step's cache key: its parent's and what the step does."""
    return hashlib.sha256(json.dumps([key, *parts], sort_keys=True).encode()).hexdigest()


def _cached(store: Store, key: str) -> str | None:
    record = records.load(store.build_cache / f"{key}.json", CacheRecord)
    if isinstance(record, Broken) or not layers.layer_dir(store, record.layer).is_dir():
        return None
    return record.layer


def _store_layer(store: Store, f, key: str) -> str:
    """Unpack the step's layer tar ``f`` into the store and remember it for ``key``."""
    f.seek(0)
    with store.lock():
        digest, _ = unpack.store_layer(store, f)
        store.build_cache.mkdir(exist_ok=True)
        records.write(store.build_cache / f"{key}.json", CacheRecord(digest))
    return digest


def _env(config: RunDefaults) -> dict[str, str]:
    return dict(e.partition("=")[::2] for e in config.env or [])


class Builder:
    """One build: the store, the context, the arguments, and where progress goes."""

    def __init__(self, store: Store, context: Context, ref: str, build_args: dict[str, str],
                 no_cache: bool, say: Callable[[str], None]):  # fmt: skip
        self.store, self.context, self.ref = store, context, ref
        self.build_args, self.no_cache, self.say = build_args, no_cache, say
        self.used_args: set[str] = set()

    def _variables(self, image: _Image) -> dict[str, str]:
        """What ``$NAME`` means at a step: the ARGs, and ENV over them."""
        return {**image.variables, **_env(image.config)}

    def _arg(self, ins: cf.Instruction, variables: dict[str, str]) -> tuple[str, str | None]:
        """ARG's name and value: --build-arg's, else its default, else none."""
        arg, eq, default = cf.words(ins, variables)[0].partition("=")
        self.used_args.add(arg)
        return arg, self.build_args.get(arg, default if eq else None)

    def base(self, ins: cf.Instruction, variables: dict[str, str]) -> _Image:
        """FROM's image: a stored one, or none (scratch)."""
        name = cf.words(ins, variables)[0]
        if name == SCRATCH:
            return _Image([], RunDefaults(), _chain("", SCRATCH), {})
        try:
            record = images.get(self.store, name)
        except PyvmmError as e:
            raise ins.error(str(e)) from None
        config = records.from_json(records.to_json(record.config), RunDefaults)
        return _Image(list(record.layers), config, _chain("", "FROM", record.id), {})

    def step(self, ins: cf.Instruction, image: _Image) -> _Image:
        """``image`` after ``ins``."""
        variables = self._variables(image)
        config = dataclasses.replace(image.config)
        name = ins.name
        if name in ("RUN", "COPY", "ADD"):
            digest, key = (self._run if name == "RUN" else self._copy)(ins, image, variables)
            return dataclasses.replace(image, layers=[*image.layers, digest], key=key)
        if name == "ARG":
            arg, value = self._arg(ins, variables)
            # The value is not in the key: a step it changes has it in its own (a RUN's
            # environment, a COPY's or ENV's words), as in Docker.
            variables = {**image.variables, arg: value} if value is not None else image.variables
            return dataclasses.replace(image, variables=variables,
                                       key=_chain(image.key, "ARG", arg))  # fmt: skip
        if name == "ENV":
            env = _env(config)
            env.update(cf.pairs(ins, variables))
            config.env = [f"{k}={v}" for k, v in env.items()]
        elif name == "LABEL":
            config.labels = {**(config.labels or {}), **dict(cf.pairs(ins, variables))}
        elif name == "EXPOSE":
            ports = {p if "/" in p else f"{p}/tcp": {} for p in cf.words(ins, variables)}
            config.exposed_ports = {**(config.exposed_ports or {}), **ports}
        elif name == "WORKDIR":
            config.working_dir = posixpath.normpath(
                posixpath.join(config.working_dir or "/", cf.words(ins, variables)[0])
            )
        elif name == "USER":
            config.user = cf.words(ins, variables)[0]
        elif name in ("CMD", "ENTRYPOINT"):
            command = ins.args if ins.exec_form else ["/bin/sh", "-c", ins.text]
            if name == "CMD":
                config.cmd = command
            else:  # as in Docker, an ENTRYPOINT resets a CMD the base image had
                config.entrypoint = command
                config.cmd = config.cmd if image.cmd_set else None
        key = _chain(image.key, name, records.to_json(config))  # (ARG values expanded in)
        cmd_set = image.cmd_set or name == "CMD"
        return dataclasses.replace(image, config=config, key=key, cmd_set=cmd_set)

    def _reuse(self, key: str) -> str | None:
        digest = None if self.no_cache else _cached(self.store, key)
        if digest is not None:
            self.say(f"--> Using cache {key[:12]}")
        return digest

    def _run(self, ins: cf.Instruction, image: _Image, variables: dict[str, str]):
        command = ins.args if ins.exec_form else ["/bin/sh", "-c", ins.text]
        env = _env(image.config) or dict([container.DEFAULT_PATH.split("=", 1)])
        env = {**{k: v for k, v in image.variables.items() if k not in env}, **env}
        key = _chain(image.key, "RUN", command, image.variables)
        digest = self._reuse(key)
        if digest is not None:
            return digest, key
        name, tag = split_image_ref(self.ref)
        step = ImageRecord(name=name, tag=tag, id=key, layers=image.layers, created=time.time(),
                           config=RunDefaults(env=[f"{k}={v}" for k, v in env.items()],
                                              working_dir=image.config.working_dir,
                                              user=image.config.user))  # fmt: skip
        try:
            rec = container.create(self.store, step, command)
        except PyvmmError as e:  # a USER that the image does not know
            raise ins.error(str(e)) from None
        try:
            _, code = container.start(self.store, rec.id, attach=True, forward=False)
            if code != 0:
                raise BuildError(f"Containerfile:{ins.line}: RUN: the command exited with "
                                 f"status {code}")  # fmt: skip
            with tempfile.TemporaryFile(dir=self.store.root) as f:
                unpack.tar_directory(self.store.containers / rec.id / "upper", f, True)
                return _store_layer(self.store, f, key), key
        finally:
            container.remove(self.store, rec.id, force=True)

    def _copy(self, ins: cf.Instruction, image: _Image, variables: dict[str, str]):
        words = cf.words(ins, variables)
        *srcs, dest = words
        what = f"Containerfile:{ins.line}: {ins.name}"
        if ins.name == "ADD" and any("://" in s for s in srcs):
            raise PyvmmError(f"{what}: ADD from a URL is not supported (use a local file)")
        # A destination ending in / (or ".": WORKDIR itself) is a directory, as in Docker.
        into = dest.endswith("/") or dest == "." or dest.endswith("/.")
        if not dest.startswith("/"):
            dest = posixpath.join(image.config.working_dir or "/", dest)
        lowers = [layers.layer_dir(self.store, d) for d in reversed(image.layers)]
        try:
            sources = [s for src in srcs for s in self.context.sources(src)]
            dest_parts = [p for p in posixpath.normpath(dest).split("/") if p]
            in_image = dest_parts and layers.lookup(lowers, dest_parts)
            is_dir = (
                into or len(srcs) > 1 or len(sources) > 1
                or (in_image and stat.S_ISDIR(in_image.st_mode))
                or any(stat.S_ISDIR(self.context.lstat(s).st_mode) for s in sources)
            )  # fmt: skip
            if len(srcs) > 1 and not into:
                raise PyvmmError("with more than one source the destination must end with /")
            if not dest_parts and not is_dir:
                raise PyvmmError("the destination / is a directory")
            chown = ins.flags.get("--chown", "0:0").split(":")
            copy = Copy(sources, dest, bool(is_dir), (int(chown[0]), int(chown[-1])),
                        int(ins.flags["--chmod"], 8) if "--chmod" in ins.flags else None,
                        ins.name == "ADD")  # fmt: skip
            with tempfile.TemporaryFile(dir=self.store.root) as f:
                writer = LayerWriter(self.context, lowers, f)
                try:
                    writer.add(copy, what)
                finally:
                    content = writer.close()
                key = _chain(image.key, ins.name, ins.flags, srcs, dest, copy.dest_is_dir, content)
                digest = self._reuse(key)
                return (digest or _store_layer(self.store, f, key)), key
        except PyvmmError as e:
            said = str(e)
            raise PyvmmError(said if said.startswith(what) else f"{what}: {said}") from None

    def build(self, instructions: list[cf.Instruction]) -> ImageRecord:
        variables: dict[str, str] = {}
        image = None
        for n, ins in enumerate(instructions, 1):
            self.say(f"STEP {n}/{len(instructions)}: {ins.name} {ins.text}")
            if image is None and ins.name == "ARG":  # before FROM: for FROM alone
                arg, value = self._arg(ins, variables)
                if value is not None:
                    variables[arg] = value
            elif image is None:
                image = self.base(ins, variables)
            else:
                image = self.step(ins, image)
        unused = sorted(set(self.build_args) - self.used_args)
        if unused:
            self.say(f"[Warning] build arguments not consumed: {', '.join(unused)}")

        def fill(job) -> tuple[list[str], dict]:
            for d in image.layers:
                if not layers.layer_dir(self.store, d).is_dir():
                    raise PyvmmError(f"layer {d} was removed during the build: build again")
            defaults = records.to_json(image.config)
            return image.layers, {k: v for k, v in defaults.items() if v is not None}

        return importer.store_image(self.store, self.ref, fill)


def build(
    store: Store,
    containerfile: str,
    context: Path,
    ref: str,
    build_args: dict[str, str] | None = None,
    no_cache: bool = False,
    say: Callable[[str], None] = print,
) -> ImageRecord:
    """Build the image ``ref`` (NAME[:TAG]) from the Containerfile text ``containerfile``
    in the context directory ``context``; return its record."""
    instructions = cf.parse(containerfile)
    split_image_ref(ref)
    ctx = Context(context)
    try:
        return Builder(store, ctx, ref, build_args or {}, no_cache, say).build(instructions)
    finally:
        ctx.close()
