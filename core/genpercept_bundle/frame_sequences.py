"""Image sequences and movies as the frames of a moving relief: which files they are, and their pixels in order.

A sequence is either numbered image files (``shot_0001.png``, ``shot_0002.png``, ...: one folder, one name
pattern, numbers one after another) or one movie file (decoded with OpenCV). Every frame must have the first
frame's size. Frames are read one at a time, so a long movie is never held in memory whole.

Numpy only at import (the Blender add-on imports it where Pillow may be missing): Pillow and OpenCV are imported
when frames are listed and read.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batch.frames import VIDEO_SUFFIXES
from .errors import GenPerceptError

_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")  # a file stem's last run of digits: (prefix, number, rest)
MIN_FRAMES = 2


@dataclass(frozen=True)
class FrameSequence:
    files: tuple[str, ...] = ()  # the frames' image files in order; empty for a movie
    movie: str = ""  # the movie file; "" for image files
    count: int = 0  # frames
    fps: float = 0.0  # the movie's frame rate; 0 for image files (they carry none)
    first_number: int = 1  # the number in the first image file's name

    @property
    def name(self) -> str:
        """A name for what is made of it: the movie's stem, or the image files' common prefix."""
        if self.movie:
            return Path(self.movie).stem
        prefix = _NUMBERED.match(Path(self.files[0]).stem).group(1).rstrip("_-. ")
        return prefix or Path(self.files[0]).parent.name

    @property
    def first_file(self) -> str:
        return self.movie or self.files[0]

    def identity(self) -> list:
        """What identifies the frames: every file's path, size and modification time."""
        return [[str(Path(f).resolve()), Path(f).stat().st_size, Path(f).stat().st_mtime_ns]
                for f in ([self.movie] if self.movie else self.files)]


def open_sequence(path: str, selected=()) -> FrameSequence:
    """The sequence ``path`` names: a movie file, a folder of numbered images, or one numbered image (then its
    siblings with the same name pattern); ``selected``: image files chosen together (a file browser's selection),
    which are the sequence then. GenPerceptError says what is wrong with it."""
    from .images import IMAGE_SUFFIXES

    if len(selected) > 1:
        return _numbered_images([Path(p) for p in selected])
    path = Path(selected[0] if selected else path)
    if path.is_dir():
        images = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise GenPerceptError(f"{path} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return _numbered_images(images)
    if not path.is_file():
        raise GenPerceptError(f"{path} does not exist: choose a movie, a folder of numbered frames, or one of them")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _movie(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise GenPerceptError(f"{path.name} is neither an image nor a movie ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return _numbered_images(_siblings(path))


def _siblings(image: Path) -> list[Path]:
    """The images in ``image``'s folder named like it but for the number."""
    match = _NUMBERED.match(image.stem)
    if match is None:
        raise GenPerceptError(f"{image.name} has no frame number in its name: choose numbered frames "
                              "(shot_0001.png, shot_0002.png, ...), their folder, or a movie")
    prefix, _, rest = match.groups()
    pattern = re.compile(rf"^{re.escape(prefix)}\d+{re.escape(rest)}$")
    return [p for p in image.parent.iterdir()
            if p.is_file() and p.suffix.lower() == image.suffix.lower() and pattern.match(p.stem)]


def _numbered_images(files: list[Path]) -> FrameSequence:
    """Image files in the order of their frame numbers; they must be numbered one after another."""
    numbered = []
    for file in files:
        match = _NUMBERED.match(file.stem)
        if match is None:
            raise GenPerceptError(f"{file.name} has no frame number in its name: frames are numbered files "
                                  "(shot_0001.png, shot_0002.png, ...)")
        numbered.append((int(match.group(2)), match.group(1), file))
    numbered.sort(key=lambda item: item[0])
    if len({(prefix, file.parent, file.suffix.lower()) for _, prefix, file in numbered}) > 1:
        raise GenPerceptError(f"the frames in {files[0].parent} are named in more than one way; keep one sequence "
                              "(one name pattern, one file type) per folder, or select its files")
    for (number, _, file), (following, _, after) in zip(numbered, numbered[1:]):
        if following != number + 1:
            raise GenPerceptError(f"frames must be numbered one after another, but {file.name} is followed by "
                                  f"{after.name}")
    _check_count(len(numbered), files[0].parent)
    return FrameSequence(files=tuple(str(file) for _, _, file in numbered), count=len(numbered),
                         first_number=numbered[0][0])


def _check_count(count: int, source):
    if count < MIN_FRAMES:
        raise GenPerceptError(f"{source} holds {count} frame{'s' if count != 1 else ''}; a moving relief needs at "
                              f"least {MIN_FRAMES}")


def _capture(movie: Path):
    import cv2

    capture = cv2.VideoCapture(str(movie))
    if not capture.isOpened():
        capture.release()
        raise GenPerceptError(f"cannot open {movie} as a movie (is it corrupt, or in a codec OpenCV lacks?)")
    return capture


def _movie(movie: Path) -> FrameSequence:
    """A movie's frames, counted by decoding them (the count in a file's header can be wrong)."""
    import cv2

    capture = _capture(movie)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise GenPerceptError(f"cannot decode any frame of {movie} (is it corrupt, or in a codec OpenCV lacks?)")
    _check_count(count, movie)
    return FrameSequence(movie=str(movie), count=count, fps=fps if 0 < fps < 1000 else 0.0)


def read_frames(sequence: FrameSequence, pixel_cap: int | None = None) -> Iterator[np.ndarray]:
    """The frames as uint8 RGB [H,W,3], one at a time; GenPerceptError for a frame that cannot be read or has
    another size than the first."""
    from .images import load_image

    frames = _movie_frames(sequence) if sequence.movie else (load_image(f, pixel_cap) for f in sequence.files)
    size = None
    for index, frame in enumerate(frames):
        size = size or frame.shape[:2]
        if frame.shape[:2] != size:
            raise GenPerceptError(f"frame {index + 1} ({_frame_name(sequence, index)}) is {frame.shape[1]}x"
                                  f"{frame.shape[0]} but the first frame is {size[1]}x{size[0]}; every frame must "
                                  "have one size")
        yield frame


def _frame_name(sequence: FrameSequence, index: int) -> str:
    return Path(sequence.files[index]).name if sequence.files else f"{Path(sequence.movie).name} #{index + 1}"


def _movie_frames(sequence: FrameSequence) -> Iterator[np.ndarray]:
    capture = _capture(Path(sequence.movie))
    try:
        for index in range(sequence.count):
            ok, bgr = capture.read()
            if not ok:
                raise GenPerceptError(f"cannot decode frame {index + 1} of {sequence.movie}")
            yield np.ascontiguousarray(bgr[..., ::-1])
    finally:
        capture.release()
