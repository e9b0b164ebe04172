"""``facefit gallery ...``: the face database for 1:N recognition (enrol, list, edit, forget, move)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import Detector, DetectorOpt, err, info, out, progress_bar, report_failures, warn
from facefit.cli.options import EXIT_PARTIAL, GalleryModelOpt, GalleryOpt, JsonOpt, PrecisionOpt

gallery_app = typer.Typer(
    help="Register people's faces for 1:N identification. The gallery is --gallery PATH (a SQLite file or a "
         "postgresql:// URL), else $FACEFIT_GALLERY, else ~/.local/share/facefit/gallery.sqlite.",
    no_args_is_help=True,
)

def open_gallery(location: str | None, *, create: bool = False, **settings):
    from facefit.gallery.gallery import Gallery
    from facefit.gallery.search import SearchSettings

    return Gallery.open(location, create=create, settings=SearchSettings(**settings))


def gallery_model(gallery, model: str | None):
    from facefit.gallery.gallery import gallery_model as find

    return find(gallery, model)


def remember_model(gallery, model: str | None) -> None:
    """Record where an explicitly given model lives, so later commands find it without --model."""
    import os
    from pathlib import Path

    from facefit.models.factory import split_checkpoint_ref
    from facefit.models.registry import is_registered

    if model is None or gallery.contract is None:
        return
    if (peer := split_checkpoint_ref(model)) is not None:  # ARCH=PATH: the architecture and its file
        ref = f"{peer[0]}={os.path.abspath(Path(peer[1]).expanduser())}"
    else:
        ref = model if is_registered(model) else os.path.abspath(Path(model).expanduser())
    gallery.store.set_model_ref(ref)


def resolve_threshold(g, net, threshold: float | None, threshold_from: Path | None) -> tuple[float, str]:
    """The 1:N threshold by the one policy (``facefit.models.thresholds``), labelled for the terminal."""
    from facefit.models.thresholds import choose_threshold

    chosen = choose_threshold(net.contract, "identify", metric=g.metric, given=threshold, given_source="--threshold",
                              calibration=threshold_from)
    return chosen.require(), chosen.source


def _report(report, what: str) -> None:
    for path, who, fid in report.duplicates:
        info(f"{path}: already enrolled as {who} (face {fid}); not stored again")
    report_failures(report.failures, None, len(report.added) + len(report.duplicates) + len(report.failures), what)
    if report.skipped:
        info(f"skipped {len(report.skipped)} file(s) that are not images in person folders, e.g. "
             f"{report.skipped[0]}")
    persons = len({p for _, p, _ in report.added})
    info(f"added {len(report.added)} face(s) of {persons} person(s); {len(report.duplicates)} duplicate(s), "
         f"{len(report.failures)} failed")
    if report.failures:
        raise typer.Exit(1 if not report.added and not report.duplicates else EXIT_PARTIAL)


@gallery_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The person's name.", show_default=False)],
    images: Annotated[list[Path], typer.Argument(help="Photos of this person (files or folders).",
                                                 show_default=False)],
    gallery: GalleryOpt = None,
    model: GalleryModelOpt = None,
    precision: PrecisionOpt = None,
    face: Annotated[str | None, typer.Option("--face", help="For photos with several faces: largest, center or a "
                                             "number (0 = leftmost). Without it such photos are refused.",
                                             show_default=False)] = None,
    detector: DetectorOpt = Detector.model,
    no_crops: Annotated[bool, typer.Option("--no-crops", help="Do not keep face crops (then 'reembed' is "
                                           "impossible for these faces).")] = False,
) -> None:
    """Enrol a person from one or more photos (one face per photo).

    The same photo is never stored twice. Photos without a face, unreadable
    files, and photos with several faces (unless --face chooses one) are
    reported one per line; the others are still enrolled (exit code 3).
    """
    from facefit.gallery.enrol import parse_face_choice
    from facefit.io.files import collect_images

    choice = parse_face_choice(face)
    found = collect_images(images)
    if link := found.link_note():
        info(link)
    if not found.files:
        raise typer.BadParameter("no image files found", param_hint="IMAGES")
    with open_gallery(gallery, create=True) as g:
        net = gallery_model(g, model)
        with progress_bar(f"enrolling {name}", total=len(found.files)) as bar:
            report = g.add(name, found.files, net, detector=detector.name_or_none, face=choice,
                           keep_crops=not no_crops, on_image=bar.advance)
        remember_model(g, model)
        report.skipped = [str(p) for p in found.skipped]
        _report(report, "photos")


@gallery_app.command("add-folder")
def add_folder(
    root: Annotated[Path, typer.Argument(help="ROOT/<person>/<photos>: one folder per person.", show_default=False)],
    gallery: GalleryOpt = None,
    model: GalleryModelOpt = None,
    precision: PrecisionOpt = None,
    face: Annotated[str | None, typer.Option("--face", help="For photos with several faces: largest, center or a "
                                             "number (0 = leftmost).", show_default=False)] = None,
    detector: DetectorOpt = Detector.model,
    no_crops: Annotated[bool, typer.Option("--no-crops", help="Do not keep face crops.")] = False,
) -> None:
    """Enrol every person of an identity-folder tree (the folder name is the person's name).

    Each person is stored in one transaction: an interrupted run keeps whole
    persons, and running it again adds only what is missing. Links to folders
    (out of the tree, back into it, or inside a person's folder) are not
    followed, and listed.
    """
    from facefit.data.folders import IdentityFolders
    from facefit.gallery.enrol import parse_face_choice

    choice = parse_face_choice(face)
    scan = IdentityFolders.scan(root, outside_links=False)
    if link := scan.link_note():
        warn(link)
    n_images = scan.n_images
    with open_gallery(gallery, create=True) as g:
        net = gallery_model(g, model)
        with progress_bar("enrolling", total=n_images) as bar:
            report = g.add_folder(root, net, detector=detector.name_or_none, face=choice, keep_crops=not no_crops,
                                  on_image=bar.advance)
        remember_model(g, model)
        _report(report, "photos")


def _when(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


@gallery_app.command("list")
def list_persons(gallery: GalleryOpt = None, json_out: JsonOpt = False) -> None:
    """List the enrolled persons with their number of faces."""
    import json

    from rich.table import Table

    with open_gallery(gallery) as g:
        persons = g.persons()
        contract = g.contract
        if json_out:
            print(json.dumps({"gallery": g.location, "model": None if contract is None else contract.id,
                              "persons": [{"name": p.name, "faces": p.n_faces, "updated": p.updated}
                                          for p in persons]}))
            return
        table = Table(title=f"{g.location}", title_justify="left")
        for col in ("person", "faces", "updated"):
            table.add_column(col, justify="right" if col == "faces" else "left")
        for p in persons:
            table.add_row(p.name, str(p.n_faces), _when(p.updated))
        out.print(table)
        model = "none yet" if contract is None else f"{contract.name or contract.architecture} ({contract.id})"
        info(f"{len(persons)} person(s), {sum(p.n_faces for p in persons)} face(s); model {model}")


@gallery_app.command("show")
def show(name: Annotated[str, typer.Argument(help="The person's name.", show_default=False)],
         gallery: GalleryOpt = None, json_out: JsonOpt = False) -> None:
    """Show one person's faces: id, source photo, box, detection score, size and sharpness."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    with open_gallery(gallery) as g:
        faces = g.faces(name)
    if json_out:
        print(json.dumps({"name": name, "faces": [asdict(f) for f in faces]}))
        return
    table = Table(title=name, title_justify="left")
    for col in ("face", "source", "box", "score", "size px", "sharpness", "crop", "added"):
        table.add_column(col)
    for f in faces:
        box = ",".join(f"{v:.0f}" for v in f.box)
        table.add_row(str(f.id), f.source, box, f"{f.det_score:.2f}", f"{f.face_px:.0f}", f"{f.sharpness:.0f}",
                      "yes" if f.has_crop else "no", _when(f.created))
    out.print(table)


@gallery_app.command("rename")
def rename(old: Annotated[str, typer.Argument(help="Current name.", show_default=False)],
           new: Annotated[str, typer.Argument(help="New name.", show_default=False)],
           gallery: GalleryOpt = None) -> None:
    """Rename a person (refused when the new name is taken)."""
    with open_gallery(gallery) as g:
        g.rename(old, new)
    info(f"renamed {old!r} to {new!r}")


def _confirm(what: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        from facefit.errors import UsageError

        raise UsageError(f"refusing to {what} without confirmation; pass --yes")
    typer.confirm(f"{what}?", abort=True)


@gallery_app.command("remove")
def remove(
    name: Annotated[str | None, typer.Argument(help="The person to forget.", show_default=False)] = None,
    face: Annotated[int | None, typer.Option("--face", help="Remove only this face id (see 'show').",
                                             show_default=False)] = None,
    gallery: GalleryOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    vacuum: Annotated[bool, typer.Option("--vacuum", help="PostgreSQL: also rewrite the tables (VACUUM FULL) so "
                                         "the removed rows leave the database's files.")] = False,
) -> None:
    """Forget a person: every embedding and stored crop is deleted (and overwritten on disk).

    With --face ID only that face is removed (the person goes with their last face).
    """
    from facefit.errors import UsageError

    if (name is None) == (face is None):
        raise UsageError("give a person's NAME or --face ID")
    with open_gallery(gallery) as g:
        if face is not None:
            _confirm(f"remove face {face}", yes)
            who = g.remove_face(face)
            info(f"removed face {face} of {who}")
        else:
            _confirm(f"remove {name} and all their faces", yes)
            n = g.remove(name)
            info(f"removed {name} ({n} face(s))")
        _erase_removed(g, vacuum)


def _erase_removed(g, vacuum: bool) -> None:  # a Gallery
    """PostgreSQL keeps removed rows in its files until VACUUM FULL: run it, or say how."""
    if g.erased_on_removal:
        return
    if vacuum:
        g.erase_removed()
        info("rewrote the gallery's tables (VACUUM FULL): the removed rows are gone from them")
    else:
        info("note: PostgreSQL keeps the removed rows in its files until its tables are rewritten: run "
             "VACUUM FULL facefit_crops, facefit_faces, facefit_persons (or remove with --vacuum)")


@gallery_app.command("export")
def export(path: Annotated[Path, typer.Argument(help="Output .zip file.", show_default=False)],
           gallery: GalleryOpt = None,
           overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False) -> None:
    """Write the whole gallery (persons, faces, embeddings, crops, model contract) to a zip file."""
    from facefit.gallery.location import is_postgres, resolve_location
    from facefit.gallery.transfer import export_gallery
    from facefit.io.files import check_not_input, check_writable

    location = resolve_location(gallery)
    if not is_postgres(location):
        check_not_input(path, [location, f"{location}-wal", f"{location}-shm"], what="the gallery's own file")
    check_writable(path, overwrite)
    with open_gallery(location) as g:
        n = export_gallery(g, path)
    info(f"exported {n} face(s) to {path}")


@gallery_app.command("import")
def import_(path: Annotated[Path, typer.Argument(help="A zip written by 'facefit gallery export'.",
                                                 show_default=False)],
            gallery: GalleryOpt = None) -> None:
    """Merge an exported gallery into this one (same model only; faces already present are skipped)."""
    from facefit.gallery.location import is_postgres, resolve_location
    from facefit.gallery.transfer import import_gallery

    location = resolve_location(gallery)
    new_file = None if is_postgres(location) or Path(location).exists() else Path(location)
    try:
        with open_gallery(location, create=True) as g:
            added, dups = import_gallery(g, path)
    except BaseException:
        if new_file is not None:  # a refused import leaves no empty gallery behind
            for leftover in (new_file, Path(f"{new_file}-wal"), Path(f"{new_file}-shm")):
                leftover.unlink(missing_ok=True)
        raise
    info(f"imported {added} face(s); {dups} already present")


@gallery_app.command("reembed")
def reembed(model: Annotated[str, typer.Option("--model", "-m", help="The new model (name or path).",
                                               show_default=False)],
            gallery: GalleryOpt = None) -> None:
    """Rebuild every embedding with another model, from the stored face crops, all at once.

    Needed after fine-tuning: a gallery refuses to mix or search embeddings of
    different models. Either every face is re-embedded or none is.
    """
    from facefit.models import create_model

    net = create_model(model)
    with open_gallery(gallery) as g:
        total = g.store.counts()[1]
        with progress_bar("re-embedding", total=total) as bar:
            n = g.reembed(net, on_face=bar.advance)
        remember_model(g, model)
    info(f"re-embedded {n} face(s) with {net.contract.id}")
    if n == 0:
        err.print("facefit: warning: the gallery is empty", markup=False)
