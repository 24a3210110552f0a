"""Running a dataset job: prepare the cases, render the missing images locally or on a Dask cluster, export.

Work is split into chunks of consecutive images of one case; a worker loads a case once and keeps it for the
chunks that follow. Which images exist decides what is left to do, so a rerun after an interruption makes only
the missing ones, and the result does not depend on the number of workers or their order.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from pathlib import Path

from ..errors import NeedleplanError, describe_path
from ..io.atomic import atomic_file
from ..volume import Volume
from .cases import Case, CaseSpec, case_name, check_levels, load_case, load_ct, prepare_case
from .config import DatasetConfig
from .exports import write_exports
from .images import labels_path, make_image

#: Images per task: small enough for a smooth progress bar, large enough to keep task overhead low.
CHUNK_IMAGES = 8
DATASET_FILE = "dataset.json"
_SCHEDULER = re.compile(r"^(tcp|tls)://[^\s/:]+:\d{1,5}$")
_DATASET_FOLDERS = ("images", "masks", "labels", "cases")
#: prctl(2) option: the signal a process gets when its parent ends (Linux).
_PR_SET_PDEATHSIG = 1


@dataclass
class DatasetSummary:
    """What a run did (or, for a dry run, would do)."""

    out_dir: Path
    cases: dict[str, int] = field(default_factory=dict)
    """Case name -> images it gets."""
    done: dict[str, int] = field(default_factory=dict)
    """Case name -> images that existed before this run."""
    already_done: int = 0
    made: int = 0
    seconds: float = 0.0
    """The whole run: preparing the cases, rendering, exporting."""
    render_seconds: float = 0.0
    """Making the images (their rate is made / render_seconds)."""
    dry_run: bool = False

    @property
    def total(self) -> int:
        """Images in the finished dataset."""
        return sum(self.cases.values())

    def lines(self) -> list[str]:
        """The summary in words."""
        if self.dry_run:
            head = [f"dry run: would write {self.total - self.already_done} images to {self.out_dir} "
                    f"({self.already_done} of {self.total} already there)"]
        else:
            rate = self.made / self.render_seconds if self.render_seconds > 0 else 0.0
            head = [f"made {self.made} images in {self.seconds:.1f} s ({rate:.1f} images/s); "
                    f"{self.already_done} were already there; {self.total} in {self.out_dir}"]
        return head + [f"  {name}: {count} images ({self.done.get(name, 0)} there before)"
                       for name, count in self.cases.items()]


def make_dataset(config: DatasetConfig, out_dir: str | Path, *, workers: int = 1, scheduler: str | None = None,
                 dry_run: bool = False, progress: bool = True) -> DatasetSummary:
    """Make (or finish) a labelled simulated-fluoroscopy dataset.

    Parameters
    ----------
    config : DatasetConfig
        From :func:`needleplan.dataset.read_config`.
    out_dir : path
        Output folder: new, empty, or a folder this config wrote before (the run resumes).
    workers : int
        Local worker processes (1: render in this process, using every core).
    scheduler : str, optional
        "tcp://HOST:PORT" of a running Dask distributed scheduler; its workers render instead of local ones.
        They must see ``out_dir`` and the case paths at the same place (a shared file system).
    dry_run : bool
        Only report what would be made; nothing is written.
    progress : bool
        Show a progress bar (images/s, time left) on stderr.

    Returns
    -------
    DatasetSummary
    """
    if not isinstance(workers, int) or workers < 1:
        raise NeedleplanError(f"workers must be a whole number of 1 or more, got {workers!r}")
    if scheduler is not None and not _SCHEDULER.match(scheduler):
        raise NeedleplanError(f"scheduler must look like tcp://HOST:PORT, got {scheduler!r}")
    out_dir = Path(out_dir)
    stale = _check_out_dir(out_dir, config)
    started = time.perf_counter()
    summary = DatasetSummary(out_dir, dry_run=dry_run)
    named, loaded = _named_cases(config)
    for spec, name in named:
        summary.cases[name] = config.images_of(spec)
    pending = {name: [i for i in range(summary.cases[name]) if not labels_path(out_dir, name, i).exists()]
               for _, name in named}
    summary.done = {name: summary.cases[name] - len(pending[name]) for name in pending}
    summary.already_done = sum(summary.done.values())
    if dry_run:
        for spec, name in named:
            check_levels(spec, loaded.get(name), name)
        return summary
    with _locked(out_dir):
        if stale:
            shutil.rmtree(out_dir / "cases", ignore_errors=True)
        _write_dataset_file(out_dir, config, [name for _, name in named])
        _remove_partial_files(out_dir)
        for spec, name in named:
            ct = loaded.pop(name, None)
            prepare_case(spec, ct if ct is not None else load_ct(spec), name, config, out_dir)
        chunks = [(spec, name, pending[name][start:start + CHUNK_IMAGES])
                  for spec, name in named for start in range(0, len(pending[name]), CHUNK_IMAGES)]
        rendering = time.perf_counter()
        with _progress_bar(summary, progress) as advance:
            if scheduler is not None:
                _run_on_dask(scheduler, config, out_dir, chunks, advance)
            elif workers > 1:
                _run_in_processes(workers, config, out_dir, chunks, advance)
            else:
                for spec, name, indices in chunks:
                    advance(render_chunk(config, spec, name, str(out_dir), indices))
        summary.render_seconds = time.perf_counter() - rendering
        summary.made = summary.total - summary.already_done
        write_exports(config, out_dir, named)
    summary.seconds = time.perf_counter() - started
    return summary


def render_chunk(config: DatasetConfig, spec: CaseSpec, name: str, out_dir: str, indices: list[int],
                 numba_threads: int | None = None) -> int:
    """Make the images ``indices`` of one case that do not exist yet; returns how many were asked for.

    This is the task each worker runs (in this process, a local worker process, or a Dask worker).
    """
    if numba_threads is not None:
        import numba

        # numba.config sets its options at import: mypy cannot see them
        numba.set_num_threads(min(numba_threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    case = _cached_case(spec, name, Path(out_dir), config.digest())
    for index in indices:
        if not labels_path(Path(out_dir), name, index).exists():
            make_image(config, case, index, Path(out_dir))
    return len(indices)


# ---- cases ----------------------------------------------------------------------------------------------------
_CASES: dict[tuple[str, str, str], Case] = {}
_CASES_LOCK = threading.Lock()
#: Cases a worker keeps loaded (the chunks come case after case).
_KEEP_CASES = 2


def _cached_case(spec: CaseSpec, name: str, out_dir: Path, config_digest: str) -> Case:
    key = (str(out_dir.resolve()), name, config_digest)
    with _CASES_LOCK:
        if key not in _CASES:
            while len(_CASES) >= _KEEP_CASES:
                _CASES.pop(next(iter(_CASES)))
            _CASES[key] = load_case(spec, name, out_dir)
        return _CASES[key]


def _named_cases(config: DatasetConfig) -> tuple[list[tuple[CaseSpec, str]], dict[str, Volume]]:
    """Each case with its name, and the scans that were loaded to name them by their content."""
    named, loaded = [], {}
    for spec in config.cases:
        name = spec.name
        if name is None and spec.phantom is None:
            ct = load_ct(spec)
            name = case_name(spec, ct)
            loaded[name] = ct
        elif name is None:
            name = case_name(spec, None)
        named.append((spec, name))
    names = [name for _, name in named]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise NeedleplanError(f"the config lists the same case twice ({', '.join(repeated)}); give each its own "
                              "name or remove the repeat")
    return named, loaded


# ---- the output folder ----------------------------------------------------------------------------------------
def _check_out_dir(out_dir: Path, config: DatasetConfig) -> bool:
    """Refuse folders that are not ours or hold images of another config; True when cases must be prepared anew."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NeedleplanError(f"output {describe_path(out_dir)} is a file; give a folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    marker = out_dir / DATASET_FILE
    if not marker.exists():
        raise NeedleplanError(f"output folder {describe_path(out_dir)} is not empty and holds no needleplan "
                              "dataset; choose a new or empty folder")
    try:
        saved = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NeedleplanError(f"cannot read {describe_path(marker)}: {error}") from None
    if saved.get("config_digest") != config.digest():
        if any((out_dir / "labels").rglob("*.json")):
            raise NeedleplanError(f"{describe_path(out_dir)} holds a dataset made with another config; use a new "
                                  "folder, or the config it was made with to finish it")
        return True  # no image was made with the old config (it stopped while preparing): start afresh
    return False


def _write_dataset_file(out_dir: Path, config: DatasetConfig, names: list[str]) -> None:
    from .. import __version__

    document = {"needleplan": __version__, "config_digest": config.digest(), "config": config.public_dict(names)}
    with atomic_file(out_dir / DATASET_FILE) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def _remove_partial_files(out_dir: Path) -> None:
    """Temporary files an interrupted run left (an atomic write that never finished)."""
    for folder in _DATASET_FOLDERS:
        for leftover in (out_dir / folder).rglob(".part-*"):
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """One run per output folder at a time (the lock goes with the process, so a killed run leaves none)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NeedleplanError(f"another needleplan run is writing {describe_path(out_dir)}; wait for it "
                                  "to finish") from None
        yield


# ---- runners --------------------------------------------------------------------------------------------------
Chunks = list[tuple[CaseSpec, str, list[int]]]


def _run_in_processes(workers: int, config: DatasetConfig, out_dir: Path, chunks: Chunks,
                      advance: Callable[[int], None]) -> None:
    """Render the chunks in local worker processes that die with this one and leave Ctrl+C to it."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked numba thread pools
    with _sigint_raises(), ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                               initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        with _sigint_blocked():  # the workers start now and keep SIGINT blocked (the mask is inherited)
            futures = [pool.submit(render_chunk, config, spec, name, str(out_dir), indices, 1)
                       for spec, name, indices in chunks]
        try:
            for future in as_completed(futures):
                advance(future.result())
        except BaseException:  # stop the running chunks now; the pool then fails the others (3.14: kill_workers)
            for process in list(pool._processes.values()):
                process.terminate()
            raise


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread meanwhile; this process gets a SIGINT that came meanwhile when it ends.

    Processes started meanwhile inherit SIGINT blocked from their first instruction, so a Ctrl+C in the terminal,
    which reaches the whole process group, never reaches them: this process alone answers it, and stops them. A
    thread that does not block SIGINT (numba's, started earlier by planning) can still take the signal for the
    process, and Python would then raise KeyboardInterrupt here, half-way through starting a worker (which then
    fails with a traceback): so meanwhile the signal is only noted, and raised when the workers have started.
    """
    resource_tracker.ensure_running()  # start it now, not meanwhile: starting it unblocks SIGINT
    noted: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, lambda number, _frame: noted.append(number)) if main else None
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a SIGINT held back is noted now
        if main:
            signal.signal(signal.SIGINT, handler)
            if noted:
                raise KeyboardInterrupt


@contextlib.contextmanager
def _sigint_raises() -> Iterator[None]:
    """Let SIGINT raise KeyboardInterrupt meanwhile (main thread only), whatever handler the caller installed.

    While it waits for its workers this process is at a safe place to stop: the pool is then shut down properly
    and leaves nothing behind (its semaphores), unlike a process that exits at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _die_with_parent(parent_pid: int) -> None:
    """Start of a local worker: end this process when ``parent_pid`` ends, even by SIGKILL, so no worker goes on
    writing images for a run that is gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent ended before this process could ask to end with it
        os._exit(1)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _run_on_dask(scheduler: str, config: DatasetConfig, out_dir: Path, chunks: Chunks,
                 advance: Callable[[int], None]) -> None:
    from distributed import Client
    from distributed import as_completed as dask_completed

    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as error:
        raise NeedleplanError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
    with client:
        futures = [client.submit(render_chunk, config, spec, name, str(out_dir.resolve()), indices, 1, pure=False)
                   for spec, name, indices in chunks]
        try:
            for future in dask_completed(futures):
                advance(future.result())
        except BaseException:
            client.cancel(futures)
            raise


@contextlib.contextmanager
def _progress_bar(summary: DatasetSummary, show: bool) -> Iterator[Callable[[int], None]]:
    from tqdm import tqdm

    with tqdm(total=summary.total, initial=summary.already_done, unit="img", disable=not show,
              desc="images", smoothing=0.1, dynamic_ncols=True) as bar:
        yield bar.update
