"""What every `mimic-bench` command shares: clear errors, the params option, and path options that say
whether they are a stage's input or its output (tests/test_dvc_wiring.py checks dvc.yaml against them)."""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading

import click

from mimic_core.errors import MimicError


def _exit_on_second_interrupt():
    """Ctrl-C once raises KeyboardInterrupt as usual; twice exits at once with status 130, even when the first
    never reached Python (an XLA compile or another C call that holds the main thread, or code that swallowed
    it). The C-level signal handler writes each signal to a wakeup pipe at once; a watcher thread counts
    them. Outputs are written atomically and checkpoints whole, so the hard exit leaves nothing half-written.
    Returns the function that undoes it."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:          # not the main thread of the main interpreter
        os.close(r), os.close(w)
        return lambda: None

    def watch():
        n = 0
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data:
                return
            n += data.count(bytes([signal.SIGINT]))
            if n >= 2:
                os.write(2, b"\ninterrupted twice: exiting now\n")
                os._exit(130)

    threading.Thread(target=watch, name="mimic-bench-interrupts", daemon=True).start()

    def undo():
        signal.set_wakeup_fd(old)
        os.close(w)             # the watcher reads EOF and ends
    return undo


def clear_errors(fn):
    """Report pipeline errors as one clear line and exit 1, without a traceback; Ctrl-C twice exits at once."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        undo = _exit_on_second_interrupt() if threading.current_thread() is threading.main_thread() else None
        try:
            return fn(*args, **kwargs)
        except MimicError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except OSError as e:        # a read-only folder, a full disk, a vanished mount
            where = ": ".join(os.fspath(f) for f in (e.filename, e.filename2) if f is not None)
            click.echo(f"error: {where + ': ' if where else ''}{e.strerror or e}", err=True)
            sys.exit(1)
        except MemoryError:
            click.echo("error: out of memory (a scan or a batch too large for this machine?)", err=True)
            sys.exit(1)
        finally:
            if undo is not None:
                undo()
    return wrapper


params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="The params file.")


class InputPath(click.Path):
    """A path the command reads (a stage's dependency)."""


class OutputPath(click.Path):
    """A path the command writes (a stage's output: replaced whole, atomically)."""

    def __init__(self, **kw):
        super().__init__(writable=True, **kw)


class SettingsPath(click.Path):
    """A settings file the command reads whose keys DVC tracks as the stage's params (not a data dependency)."""

    def __init__(self, **kw):
        super().__init__(exists=True, dir_okay=False, **kw)


class StatePath(click.Path):
    """A folder the command keeps between runs that is no artifact (e.g. training checkpoints)."""


def input_option(name: str, help: str, dir_okay: bool = True, file_okay: bool = True, **kw):
    """A required input path option (no default: dvc.yaml is where the pipeline's paths live)."""
    return click.option(name, type=InputPath(dir_okay=dir_okay, file_okay=file_okay), help=help,
                        **({"required": True} | kw))


def output_option(name: str, help: str, dir_okay: bool = True, file_okay: bool = True, **kw):
    """A required output path option."""
    return click.option(name, type=OutputPath(dir_okay=dir_okay, file_okay=file_okay), help=help,
                        **({"required": True} | kw))


def solve_line(m: dict) -> str:
    """How a registration was solved, from its metrics: the mode and, for the temporal prior, the data-chosen
    weight, the noise it implies and the trajectory's high-frequency RMS."""
    s = m["solve"]
    if s["mode"] != "temporal" or "log10_ratio" not in s:
        return f"mode {s['mode']}"
    return (f"mode temporal: prior weight 10^{s['log10_ratio']:g} (most likely on the data), keypoint noise "
            f"{s['noise_sd_mm']:.3f} mm; joint HF RMS above {m['hf_cutoff_hz']:g} Hz {m['joint_hf_rms_deg']['all']:.3f} deg"
            + (" (at the grid's edge: widen stac.temporal.log10_ratio)" if s["grid_edge"] else ""))
