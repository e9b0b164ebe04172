"""``facefit stream``: recognise the faces in a webcam, video file or network stream, live."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import distance_threshold, info, warn
from facefit.cli.options import GalleryModelOpt, GalleryOpt, PrecisionOpt, ThresholdFromOpt
from facefit.stream import DEFAULT_DETECT_EVERY

EXIT_INTERRUPTED = 130
EXIT_BROKEN_SOURCE = 3  # the source broke off part-way; what was processed is saved


class TrackerKind(enum.StrEnum):
    flow = "flow"
    correlation = "correlation"
    none = "none"


def stream(
    source: Annotated[str, typer.Argument(help="A webcam index (0, 1, ...), a video file, or an rtsp:// or "
                                          "http(s):// stream URL.", show_default=False)],
    gallery: GalleryOpt = None,
    model: GalleryModelOpt = None,
    precision: PrecisionOpt = None,
    threshold: Annotated[float | None, typer.Option("--threshold", callback=distance_threshold,
                                                    help="Accept a match at this distance or less "
                                                    "(default: the model's own).", show_default=False)] = None,
    threshold_from: ThresholdFromOpt = None,
    out_video: Annotated[Path | None, typer.Option("--out", "-o", help="Write the annotated video here (.avi: "
                                                   "MJPG, .mp4: MPEG-4).", show_default=False)] = None,
    events: Annotated[str | None, typer.Option("--events", help="Append one JSON line per face track here when "
                                               "it ends ('-': stdout).", show_default=False)] = None,
    headless: Annotated[bool, typer.Option("--headless", help="No window (servers). Also what happens anyway "
                                           "with opencv-python-headless or without a display.")] = False,
    detect_every: Annotated[int, typer.Option("--detect-every", min=1, help="Run the face detector on every N-th "
                                              "frame and track faces in between.")] = DEFAULT_DETECT_EVERY,
    min_face: Annotated[int, typer.Option("--min-face", min=20, help="Smallest face width in pixels to detect; "
                                          "larger is faster.")] = 80,
    tracker: Annotated[TrackerKind, typer.Option("--tracker", help="How boxes follow faces between detections: "
                                                 "optical flow, dlib's correlation tracker, or not at all.")]
    = TrackerKind.flow,
    every: Annotated[int, typer.Option("--every", min=1, help="Process only every N-th frame of a video file "
                                       "(live sources always take the newest frame).")] = 1,
    max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help="Stop after this many processed "
                                                   "frames.", show_default=False)] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for a network stream or "
                                           "camera to open or deliver a frame.")] = 10.0,
    reconnect: Annotated[float | None, typer.Option("--reconnect", min=0.0, help="Seconds to keep reopening a "
                                                    "live source that dropped (0: stop there). Default: 60 for "
                                                    "cameras and rtsp/rtmp/srt/udp/tcp, 0 for http(s), whose "
                                                    "end is usually a file's end.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing --out / --events files.")]
    = False,
) -> None:
    """Detect, track and identify faces in a video, live.

    The detector runs on every N-th frame (--detect-every); in between, faces
    are followed by a tracker, and each new face is identified once against
    the gallery (then re-checked now and then), so the labels are stable and
    cheap. Boxes, names, distances and the frame rate are drawn on the video
    (--out), and each face track is logged when it ends (--events): {"track",
    "name" (null: unknown), "distance" (best), "first_seen_s", "last_seen_s",
    "first_frame", "last_frame", "frames", "identifications", "end"}.

    A window is shown only with a GUI build of OpenCV (opencv-python) and a
    display; facefit installs the headless build, so it normally runs
    headless. Stop with Ctrl-C (exit code 130), SIGTERM or q in the window
    (exit code 0): the video and the event log are closed properly and a
    summary is printed. A live source that drops is opened again (--reconnect);
    tracks end at the gap. A source that breaks off part-way for good (a
    damaged file, a stream that did not come back) gives a warning and exit
    code 3, with everything up to there saved.
    """
    import signal

    from facefit.cli.gallery import gallery_model, open_gallery, resolve_threshold
    from facefit.errors import UsageError
    from facefit.io.files import check_writable
    from facefit.stream.runner import StreamConfig, StreamRunner
    from facefit.stream.source import VideoSource
    from facefit.stream.video_out import codec_for

    config = StreamConfig(detect_every=detect_every, min_face=min_face,
                          tracker=tracker.value, threshold=threshold, every=every, max_frames=max_frames)
    # Every cheap check before the slow ones (opening a stream, loading a model).
    source_file = Path(source) if Path(source).is_file() else None
    for option, target in (("--out", out_video), ("--events", events)):
        # samefile, not resolve(): a hard link is the same file under another name
        if source_file is not None and target not in (None, "-") and Path(target).exists() \
                and os.path.samefile(target, source_file):
            raise UsageError(f"{option} {target}: is the video being read; write somewhere else")
    if out_video is not None:
        codec_for(out_video)
        if events not in (None, "-") and Path(events).resolve() == out_video.resolve():
            raise UsageError("--out and --events must be different files")
        check_writable(out_video, overwrite)
    if events not in (None, "-"):
        check_writable(events, overwrite)
    with VideoSource(source, timeout_s=timeout, reconnect_s=reconnect) as src, open_gallery(gallery) as g:
        net = gallery_model(g, model)
        g.check_model(net)
        if threshold_from is not None:
            from dataclasses import replace

            config = replace(config, threshold=resolve_threshold(g, net, threshold, threshold_from)[0])
        runner = StreamRunner(config, net, g)
        src.notify = warn
        window = None if headless else _window()
        if out_video is None and events is None and window is None:
            info("note: nothing is saved; give --out and/or --events")
        info(f"{src.describe()}; detector on every {config.detect_every} frame(s), threshold {runner.threshold:g}")
        outputs = _Outputs(out_video, events, overwrite, src, every)
        def stop() -> None:
            runner.stop()
            src.interrupt()  # also while it waits for a lost stream to come back

        installed, previous = _on_sigterm(stop)
        try:
            outputs.open()
            stats = _run(runner, src, outputs, window)
        finally:
            if installed:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            outputs.close()
            if window is not None:
                window.close()
    _summary(stats, outputs, to_stderr=events == "-")
    if stats.stop_reason:
        warn(f"{src.name}: {stats.stop_reason}; stopped there")
    if stats.stopped_by == "ctrl-c":
        raise typer.Exit(EXIT_INTERRUPTED)
    if stats.stop_reason:
        raise typer.Exit(EXIT_BROKEN_SOURCE)


def _on_sigterm(stop):
    """Let ``kill`` (and container stops) end the stream as cleanly as Ctrl-C; returns (installed, old handler)."""
    import signal

    try:
        return True, signal.signal(signal.SIGTERM, lambda *_: stop())
    except ValueError:  # not the main thread: signals cannot be caught here
        return False, None


def _window():
    from facefit.stream.display import Window

    got = Window.open()
    if isinstance(got, str):
        info(f"note: no window: {got}; running headless (--headless skips this check)")
        return None
    return got


class _Outputs:
    """The annotated video and the event log, opened after every check passed and always closed."""

    def __init__(self, video_path: Path | None, events_path: str | None, overwrite: bool, src, every: int) -> None:
        self.video_path, self.events_path, self.overwrite = video_path, events_path, overwrite
        self._src, self._every = src, every
        self.video = None
        self.events = None

    def open(self) -> None:
        from facefit.stream.events import EventLog
        from facefit.stream.video_out import VideoOut

        if self.events_path is not None:
            self.events = EventLog(self.events_path, overwrite=self.overwrite)
        if self.video_path is not None:
            fps = self._src.fps / (1 if self._src.live else self._every)
            self.video = VideoOut(self.video_path, fps, (self._src.width, self._src.height))

    def close(self) -> None:
        for part in (self.video, self.events):
            if part is not None:
                part.close()


def _run(runner, src, outputs: _Outputs, window):
    from facefit.cli.common import progress_bar

    total = src.frame_count // runner.config.every if src.frame_count else None
    if runner.config.max_frames is not None and total is not None:
        total = min(total, runner.config.max_frames)
    with progress_bar("stream", total if not src.live else None) as bar:
        return runner.run(src, video=outputs.video, events=outputs.events, window=window,
                          on_frame=lambda *_: bar.advance())


def _summary(stats, outputs: _Outputs, *, to_stderr: bool) -> None:
    from rich.table import Table

    from facefit.cli.common import err, out

    console = err if to_stderr else out
    persons = stats.persons()
    if persons:
        table = Table(title="faces seen", title_justify="left")
        for col in ("name", "tracks", "first seen s", "last seen s", "best distance"):
            table.add_column(col, justify="left" if col == "name" else "right")
        for name in sorted(persons, key=lambda n: (n is None, n or "")):
            records = persons[name]
            best = [r.distance for r in records if r.distance is not None]
            table.add_row(name or "unknown", str(len(records)), f"{min(r.first_seen_s for r in records):.2f}",
                          f"{max(r.last_seen_s for r in records):.2f}", f"{min(best):.3f}" if best else "")
        console.print(table)
    dropped = f", {stats.dropped} live frames dropped" if stats.dropped else ""
    if stats.reconnects:
        dropped += f", reconnected {stats.reconnects} time(s)"
    named = sum(1 for n in persons if n is not None)
    info(f"{stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} FPS){dropped}; "
         f"{stats.detection_frames} detector runs, {stats.identifications} identifications, {stats.tracks} "
         f"track(s): {named} person(s) named, {len(persons.get(None, []))} unknown track(s)")
    if stats.stopped_by == "ctrl-c":
        info("stopped by Ctrl-C")
    if outputs.video is not None:
        info(f"annotated video ({outputs.video.frames} frames) written to {outputs.video.path}")
    if outputs.events is not None and outputs.events_path != "-":
        info(f"{outputs.events.lines} track event(s) written to {outputs.events_path}")
