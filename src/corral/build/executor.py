"""`corral build`: run a Dockerfile's stages into an image (Dockerfile reference;
image-spec config.md for the result).

Each needed stage starts from its base (an image in the store, pulled when
missing or with `pull`; an earlier stage; or `scratch`), runs its base's ONBUILD
triggers, then its instructions in order:

- RUN, COPY and ADD make a layer: a working container on the current top layer
  (`corral.build.container`), the command run by the OCI runtime or the files
  copied in, the overlay upper dir diffed into a layer blob, the layer applied,
  and an intermediate image (no name) recorded with the step's cache key;
- every other instruction only changes the config and adds a history entry with
  `empty_layer: true` — except a WORKDIR whose directory no later step made and
  that is missing at the end of the stage, which gets a layer making it.

The build cache: each step's key is sha256(previous key, the instruction as
expanded — for COPY/ADD the content digest of the sources, for ARG its value),
the first key being the base image's id. Before running a RUN/COPY/ADD the
store is searched for an image recorded with that key; a hit continues from it.
The final image is recorded under the final key too, so a warm rebuild runs
nothing and only tags. `no_cache` skips the lookups (keys are still recorded).

A failing step raises (StepFailed carries the exit code and output); its
container, mount and layer are gone, no final image is written; the
intermediate images of the steps that succeeded stay as cache (as docker's).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.build import config_ops, run_mounts, run_step
from corral.build.container import OUTPUT_TAIL, StepContainer, StepFailed, remove_stale
from corral.build.context import BuildContext, HashCache
from corral.build.copy_files import (
    Owner,
    copy_items,
    extract_archive,
    make_dirs,
    parse_chmod,
)
from corral.build.copy_sources import AddOptions, collect
from corral.build.dockerfile import DockerfileError, Instruction, parse
from corral.build.expand import ExpansionError, Lexer
from corral.build.stages import (
    PROXY_ARGS,
    Stage,
    find_stage,
    meta_args,
    needed_stages,
    parse_arg,
    split_stages,
)
from corral.build.state import (
    CACHE_KEY,
    INTERMEDIATE,
    State,
    chain_key,
    find_cached,
    scratch_config,
    state_of_image,
    write_image,
)
from corral.errors import CorralError, InvalidArgument, NotFound

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class BuildOptions:
    context: Path
    dockerfile: Path | None = None
    dockerfile_text: str | None = None
    tags: list[str] = field(default_factory=list)
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    network: str = "host"
    runtime: str = "corral-runtime"
    runtime_root: str = "/run/corral-build"
    platform: str | None = None
    #: progress lines (step headers, cache hits); RUN output bytes
    log: Callable[[str], None] = lambda line: None
    output: Callable[[bytes], None] = lambda data: None
    #: `--secret id=ID,src=PATH`: RUN --mount=type=secret files, never in the image or cache
    secrets: dict[str, str] = field(default_factory=dict)
    #: pulls a missing base image into the store (the CLI passes the registry client)
    pull_image: Callable[[str], None] | None = None


@dataclass
class BuildResult:
    image_id: str
    names: list[str]
    ran: list[str] = field(default_factory=list)      # "LINE CMD" of steps that ran
    cached: list[str] = field(default_factory=list)   # "LINE CMD" of cache hits


class Builder:
    def __init__(self, store: Any, options: BuildOptions) -> None:
        self.store = store
        self.opts = options
        self.result = BuildResult("", [])
        self.hash_cache = HashCache(Path(store.root) / "build" / "hash-cache.json")
        self.context: BuildContext | None = None
        self.stage_states: dict[int, State] = {}
        self.step = 0
        self.total = 0
        self.used_args: set[str] = set()

    # -- entry ----------------------------------------------------------------------
    def build(self) -> BuildResult:
        from corral.image.transports.store import normalize_name

        opts = self.opts
        self.names = [normalize_name(t) for t in opts.tags]  # a bad tag fails before any step
        if not Path(opts.context).is_dir():
            raise NotFound(f"build context {opts.context} is not a directory")
        text = opts.dockerfile_text
        filename = "Dockerfile"
        text_from_file = text is None
        if text is None:
            path = opts.dockerfile or _default_dockerfile(opts.context)
            filename = str(path)
            try:
                text = Path(path).read_text()
            except FileNotFoundError:
                raise NotFound(f"Dockerfile {path} not found") from None
        dockerfile = parse(text, filename)
        for stale in remove_stale(self.store):
            opts.log(f"removed the working container {stale[:12]} of a build that was killed")
        self.lexer = Lexer(dockerfile.escape)
        self.context = BuildContext(opts.context, self.hash_cache,
                                    dockerfile=Path(filename) if text_from_file else None)
        meta, _ = meta_args(dockerfile, opts.build_args)
        self.meta = meta
        self.used_args.update(meta)
        self.used_args.update(PROXY_ARGS)
        stages = split_stages(dockerfile, meta)
        self._stages = stages
        target = stages[-1]
        if opts.target:
            found = find_stage(stages, opts.target, len(stages))
            if found is None:
                raise InvalidArgument(f"--target {opts.target}: no such stage in {filename}")
            target = found
        needed = needed_stages(stages, target, self.lexer, meta)
        self.total = sum(1 + len(s.instructions) for s in stages if s.index in needed)
        for stage in stages:
            if stage.index in needed and stage.index not in self.stage_states:
                self.stage_states[stage.index] = self._run_stage(stages, stage)
            if stage is target:
                break
        final = self.stage_states[target.index]
        image_id = self._finish(final)
        self.hash_cache.save(self.context.root)
        unused = sorted(set(opts.build_args) - self.used_args)
        if unused:
            opts.log(f"[Warning] one or more build args were not consumed: {unused}")
        self.result.image_id = image_id
        return self.result

    def _finish(self, state: State) -> str:
        names = self.names
        if self.opts.labels:
            labels = dict(state.c.get("Labels") or {})
            labels.update(self.opts.labels)
            state.c["Labels"] = labels
        key = chain_key(state.key, "FINAL " + json.dumps(self.opts.labels, sort_keys=True))
        cached = None if self.opts.no_cache else find_cached(self.store, key)
        if cached is not None:
            for name in names:
                self.store.tag(cached, name)
            image_id = cached
        else:
            image_id = write_image(self.store, state, names=names, metadata={CACHE_KEY: key})
        self.result.names = names
        self.opts.log(f"COMMIT {' '.join(names)}".rstrip())
        for name in names:
            self.opts.log(f"Successfully tagged {name}")
        return image_id

    # -- stages -----------------------------------------------------------------------
    def _log_step(self, ins: Instruction) -> None:
        self.step += 1
        self.opts.log(f"STEP {self.step}/{self.total}: {ins.original}")

    def _base_state(self, stages: list[Stage], stage: Stage) -> State:
        from corral.image.transports.tarball import host_arch

        platform = stage.platform or self.opts.platform
        arch = host_arch()
        if platform:
            os_name, _, rest = platform.partition("/")
            want_arch = rest.partition("/")[0]
            if os_name != "linux" or (want_arch and want_arch != arch):
                raise stage.from_ins.error(f"--platform={platform}: this host builds only "
                                           f"linux/{arch}")
        earlier = find_stage(stages, stage.base, stage.index)
        if earlier is not None:
            return self._stage_result(earlier).copy()
        if stage.base == "scratch":
            return State(scratch_config("linux", arch), key=chain_key("", "FROM scratch"))
        image_id = self._resolve_image(stage.base, stage.from_ins)
        return state_of_image(self.store, image_id, chain_key("", "FROM " + image_id))

    def _resolve_image(self, name: str, ins: Instruction) -> str:
        """The id of image `name`: pulled first with --pull, or when it is missing."""
        if self.opts.pull and self.opts.pull_image is not None:
            self._pull(name, ins)
        try:
            return self.store.image(name).id
        except NotFound:
            if self.opts.pull_image is None or self.opts.pull:
                raise ins.error(f"image {name!r} not found in the store") from None
        self._pull(name, ins)
        return self.store.image(name).id

    def _pull(self, name: str, ins: Instruction) -> None:
        assert self.opts.pull_image is not None
        try:
            self.opts.pull_image(name)
        except CorralError as exc:
            exc.args = (str(ins.error(f"image {name!r}: pulling it failed: {exc}")),) + \
                exc.args[1:]
            raise

    def _run_stage(self, stages: list[Stage], stage: Stage) -> State:
        self._log_step(stage.from_ins)
        state = self._base_state(stages, stage)
        if "PATH" not in config_ops.env_map(state.config):  # BuildKit and buildah set it
            config_ops.set_env(state.config, "PATH", DEFAULT_PATH)
        scope = _Scope(state, {})
        triggers = list(state.c.get("OnBuild") or [])
        if triggers and find_stage(stages, stage.base, stage.index) is None:
            state.c["OnBuild"] = None
            for trigger in triggers:
                try:
                    parsed = parse(trigger).instructions
                except DockerfileError as exc:
                    raise stage.from_ins.error(f"ONBUILD trigger {trigger!r}: {exc}") from None
                for ins in parsed:
                    ins = Instruction(ins.cmd, ins.rest, stage.from_ins.line,
                                      stage.from_ins.line, ins.original, ins.json, ins.args,
                                      ins.flags, ins.heredocs)
                    self.opts.log(f"--> ONBUILD {ins.original}")
                    self._dispatch(stages, stage, scope, ins)
        for ins in stage.instructions:
            self._log_step(ins)
            self._dispatch(stages, stage, scope, ins)
        if scope.workdir_pending is not None:
            self._ensure_workdir(scope, scope.workdir_pending)
        return scope.state

    def _ensure_workdir(self, scope: _Scope, ins: Instruction) -> None:
        """WORKDIR creates its directory (reference: WORKDIR) — here only when no later
        RUN/COPY/ADD made it: a layer holding the directory, if it is missing."""
        state = scope.state
        workdir = state.c.get("WorkingDir") or "/"
        if workdir == "/":
            return
        key = chain_key(state.key, "WORKDIR-MKDIR " + workdir)
        if self._cache_hit(scope, key, ins):
            return
        from corral.linux.mounts import secure_join

        with StepContainer(self.store, state.top, state.image_id) as ctr:
            if os.path.isdir(secure_join(str(ctr.rootfs), workdir)):
                return
            make_dirs(str(ctr.rootfs), workdir, _workdir_owner(ctr.rootfs, state))
            self._commit_step(scope, ctr, key, "WORKDIR " + workdir, ins)

    # -- instructions -------------------------------------------------------------------
    def _dispatch(self, stages: list[Stage], stage: Stage, scope: _Scope,
                  ins: Instruction) -> None:
        try:
            if ins.cmd == "ARG":
                self._arg(scope, ins)
            elif ins.cmd == "RUN":
                self._run(scope, stage, ins)
            elif ins.cmd in ("COPY", "ADD"):
                self._copy(stages, stage, scope, ins)
            else:
                self._metadata(scope, ins)
        except ExpansionError as exc:
            raise ins.error(str(exc)) from None
        except (DockerfileError, StepFailed):
            raise
        except CorralError as exc:
            # same category, the message names the line: "Dockerfile:7: COPY: ..."
            exc.args = (str(ins.error(str(exc))),) + exc.args[1:]
            raise

    def _expand_env(self, scope: _Scope) -> dict[str, str]:
        env = {k: v for k, v in scope.args.items() if v is not None}
        env.update(config_ops.env_map(scope.state.config))
        return env

    def _metadata(self, scope: _Scope, ins: Instruction) -> None:
        state = scope.state
        text = config_ops.apply_metadata(ins, state.config, self.lexer,
                                         self._expand_env(scope))
        if ins.cmd == "CMD":
            scope.cmd_set = True
        if ins.cmd == "WORKDIR":
            scope.workdir_pending = ins
        if ins.cmd == "ENTRYPOINT" and not scope.cmd_set:
            state.c["Cmd"] = None  # ENTRYPOINT resets a CMD inherited from the base
        state.add_history(text, empty_layer=True)
        state.key = chain_key(state.key, text)

    def _arg(self, scope: _Scope, ins: Instruction) -> None:
        env = self._expand_env(scope)
        parts = []
        for name, default in parse_arg(ins, self.lexer, env):
            self.used_args.add(name)
            if name in self.opts.build_args:
                value: str | None = self.opts.build_args[name]
            elif default is not None:
                value = default
            else:
                value = self.meta.get(name)
            scope.args[name] = value
            parts.append(f"{name}={value}" if value is not None else name)
        scope.state.key = chain_key(scope.state.key, "ARG " + " ".join(parts))

    def _cache_hit(self, scope: _Scope, key: str, ins: Instruction) -> bool:
        if self.opts.no_cache:
            return False
        hit = find_cached(self.store, key)
        if hit is None:
            return False
        scope.state = state_of_image(self.store, hit, key)
        scope.workdir_pending = None
        self.opts.log(f"--> Using cache {hit.split(':', 1)[1]}")
        self.result.cached.append(f"{ins.line} {ins.cmd}")
        return True

    def _commit_step(self, scope: _Scope, ctr: StepContainer, key: str, created_by: str,
                     ins: Instruction) -> None:
        layer = ctr.commit_layer()
        new = scope.state.copy()
        if layer is not None:
            new.add_layer(*layer)
        new.add_history(created_by, empty_layer=layer is None)
        new.key = key
        try:
            new.image_id = write_image(self.store, new,
                                       metadata={CACHE_KEY: key, INTERMEDIATE: True})
        except BaseException:
            if layer is not None:
                self.store.layers.release_hold(layer[2])
            raise
        scope.state = new
        scope.workdir_pending = None
        self.result.ran.append(f"{ins.line} {ins.cmd}")
        self.opts.log(f"--> {new.image_id.split(':', 1)[1][:12]}")

    def _stage_result(self, other: Stage) -> State:
        """An earlier stage's result, building it now if the plan did not need it (an
        ONBUILD trigger of a base image can name a stage of this Dockerfile)."""
        state = self.stage_states.get(other.index)
        if state is None:
            self.total += 1 + len(other.instructions)
            state = self.stage_states[other.index] = self._run_stage(self._stages, other)
        return state

    def _mount_origin(self, ref: str, stage: Stage, ins: Instruction) -> tuple[str, str | None]:
        """(cache-key text, image id) of a `from=` of RUN --mount: a stage or an image."""
        other = find_stage(self._stages, ref, stage.index)
        if other is not None:
            state = self._stage_result(other)
            return f"stage-rootfs:{state.top}", state.image_id
        image = self._resolve_image(ref, ins)
        return "image:" + image, image

    def _run(self, scope: _Scope, stage: Stage, ins: Instruction) -> None:
        state = scope.state
        network = ins.flag("network") or self.opts.network
        if network not in run_step.NETWORKS:
            raise ins.error(f"--network={network}: expected host, none or default")
        if ins.flag("security") is not None:
            raise ins.error("--security is not supported yet")
        planned = run_mounts.plan(ins, run_mounts.parse(ins, self.lexer, self._expand_env(scope)),
                                  context=self.context,
                                  stage_root=lambda ref: self._mount_origin(ref, stage, ins),
                                  secrets=self.opts.secrets)
        argv, script = run_step.command(ins, state.config)
        if not argv or not argv[0]:
            raise ins.error("requires a command")
        image_env = config_ops.env_map(state.config)
        arg_env = [f"{k}={v}" for k, v in scope.args.items()
                   if v is not None and k not in image_env]
        proxies = [f"{k}={v}" for k, v in self.opts.build_args.items()
                   if k in PROXY_ARGS and k not in scope.args]
        description = "RUN " + json.dumps(argv) + (f" script={script!r}" if script else "") + \
            f" network={network} args={json.dumps(sorted(arg_env))}" + \
            (f" mounts={json.dumps(planned.keys)}" if planned.keys else "")
        key = chain_key(state.key, description)
        if self._cache_hit(scope, key, ins):
            return
        created_by = "RUN " + (" ".join(argv) if not ins.json else json.dumps(argv))
        script_file = None
        try:
            with StepContainer(self.store, state.top, state.image_id) as ctr:
                workdir = state.c.get("WorkingDir") or "/"
                if workdir != "/":
                    make_dirs(str(ctr.rootfs), workdir, _workdir_owner(ctr.rootfs, state))
                spec, mounts = run_step.process_spec(state.config, ctr.rootfs, argv,
                                                     arg_env + proxies, network)
                if script is not None:
                    fd, script_file = tempfile.mkstemp(prefix="heredoc-", dir=self._tmp())
                    with os.fdopen(fd, "w") as f:
                        f.write(script)
                    os.chmod(script_file, 0o755)
                    mounts.append(run_step.script_mount(script_file))
                mounts += run_mounts.materialize(planned, store=self.store, tmpdir=self._tmp())
                tail = bytearray()

                def output(chunk: bytes) -> None:
                    tail.extend(chunk)
                    del tail[:-OUTPUT_TAIL]
                    self.opts.output(chunk)

                code = ctr.run(spec, self.opts.runtime, self.opts.runtime_root, output,
                               extra_mounts=mounts)
                if code != 0:
                    raise StepFailed(f"{ins.cmd} at line {ins.line} ({created_by}) failed "
                                     f"with exit code {code}", code,
                                     tail.decode(errors="replace"))
                self._commit_step(scope, ctr, key, created_by, ins)
        finally:
            planned.cleanup()
            if script_file is not None:
                os.unlink(script_file)

    # -- COPY / ADD -------------------------------------------------------------------
    def _copy(self, stages: list[Stage], stage: Stage, scope: _Scope,
              ins: Instruction) -> None:
        state = scope.state
        env = self._expand_env(scope)
        if ins.flag("keep-git-dir") is not None:
            raise ins.error("--keep-git-dir: git sources are not supported yet")
        parents = (ins.flag("parents") or "false").lower() in ("true", "1")
        unpack = ins.flag("unpack")
        if unpack is not None and unpack.lower() not in ("true", "false", "1", "0"):
            raise ins.error(f"--unpack={unpack}: expected true or false")
        checksum = ins.flag("checksum")
        if checksum is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", checksum):
            raise ins.error(f"--checksum={checksum}: expected sha256:<64 hex digits>")
        add_options = AddOptions(
            exclude=tuple(self.lexer.word(p, env) for p in ins.flag_all("exclude")),
            checksum=checksum,
            unpack=None if unpack is None else unpack.lower() in ("true", "1"),
            parents=parents)
        if ins.cmd == "ADD" and ins.flag("from") is not None:
            raise ins.error("--from is only for COPY")
        words = [self.lexer.word(a, env) for a in ins.args] if ins.json else \
            self.lexer.words(ins.rest, env)
        if len(words) < 2:
            raise ins.error("requires at least two arguments: SOURCE... DEST")
        sources, dest = words[:-1], words[-1]
        if len(sources) > 1 and not dest.endswith("/"):
            raise ins.error(f"with more than one source the destination must be a directory "
                            f"and end with a /: {dest}")
        chmod_text = ins.flag("chmod")
        chmod_text = self.lexer.word(chmod_text, env) if chmod_text else None
        chmod = parse_chmod(chmod_text, ins.cmd)
        chown = ins.flag("chown")
        chown = self.lexer.word(chown, env) if chown else None
        workdir = state.c.get("WorkingDir") or "/"
        from_ref = ins.flag("from")
        mount_dir: str | None = None
        collected = None
        try:
            origin = ""
            if from_ref:
                from_ref = self.lexer.word(from_ref, env)
                other = find_stage(stages, from_ref, stage.index)
                if other is not None:
                    src_state = self._stage_result(other)
                    src_image = src_state.image_id
                    origin = f"stage-rootfs:{src_state.top}"  # its layers: its content
                else:
                    src_image = self._resolve_image(from_ref, ins)
                    origin = "image:" + src_image
                mount_dir = tempfile.mkdtemp(prefix="copy-from-", dir=self._tmp())
                if src_image is not None:
                    self.store.mount_image(src_image, Path(mount_dir))
            collected = collect(ins, sources, context=self.context, from_root=mount_dir,
                                lexer=self.lexer, env=env, cache=self.hash_cache,
                                tmpdir=self._tmp(), options=add_options)
            description = (f"{ins.cmd} chown={chown} chmod={chmod_text} dest={dest} "
                           f"workdir={workdir} {origin} exclude={list(add_options.exclude)} parents={parents} "
                           f"unpack={add_options.unpack} " + json.dumps(collected.digests))
            key = chain_key(state.key, description)
            if self._cache_hit(scope, key, ins):
                return
            created_by = f"{ins.cmd} {' '.join(sources)} {dest}"
            with StepContainer(self.store, state.top, state.image_id) as ctr:
                owner = _owner(ctr.rootfs, chown, ins) if chown else None
                if workdir != "/":
                    make_dirs(str(ctr.rootfs), workdir, _workdir_owner(ctr.rootfs, state))
                if collected.items:
                    copy_items(ctr.rootfs, collected.items, dest, workdir, owner, chmod)
                for archive in collected.archives:
                    extract_archive(archive, ctr.rootfs, dest, workdir, owner)
                self._commit_step(scope, ctr, key, created_by, ins)
        finally:
            if collected is not None:
                collected.cleanup()
            if mount_dir is not None:
                from corral.storage.mount import unmount_all_under

                unmount_all_under(Path(mount_dir))
                shutil.rmtree(mount_dir, ignore_errors=True)

    def _tmp(self) -> str:
        path = Path(self.store.root) / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)


class _Scope:
    """A stage's mutable state: the image state, its ARGs, whether CMD was set."""

    def __init__(self, state: State, args: dict[str, str | None]) -> None:
        self.state = state
        self.args = args
        self.cmd_set = False
        self.workdir_pending: Instruction | None = None  # a WORKDIR no layer made yet


def _default_dockerfile(context: Path) -> Path:
    for name in ("Containerfile", "Dockerfile"):
        if (Path(context) / name).is_file():
            return Path(context) / name
    return Path(context) / "Dockerfile"


def _workdir_owner(rootfs: Path, state: State) -> Owner | None:
    """Who owns the WORKDIR directories a step makes: USER when set (BuildKit)."""
    user = state.c.get("User")
    if not user:
        return None
    from corral.image.runtime_spec import resolve_user

    try:
        found = resolve_user(rootfs, user)
    except NotFound:
        return None  # a USER the image does not know yet: root's (as buildah)
    return Owner(found["uid"], found["gid"])


def _owner(rootfs: Path, chown: str, ins: Instruction) -> Owner:
    from corral.image.runtime_spec import resolve_user

    try:
        user = resolve_user(rootfs, chown)
    except NotFound as exc:
        raise ins.error(f"--chown={chown}: {exc}") from None
    if chown.isdigit():  # a numeric user alone: "the GID is set to the same numeric value
        return Owner(user["uid"], user["uid"])  # as the UID" (a name: its passwd group)
    return Owner(user["uid"], user["gid"])


def run_build(store: Any, options: BuildOptions) -> BuildResult:
    """Build (see the module docstring); the BuildResult."""
    started = time.monotonic()
    result = Builder(store, options).build()
    options.log(f"--> built {result.image_id.split(':', 1)[1][:12]} in "
                f"{time.monotonic() - started:.2f}s")
    return result


__all__ = ["BuildOptions", "BuildResult", "Builder", "StepFailed", "run_build"]

