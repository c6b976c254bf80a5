"""Image sequences and movies as frames: which files, in which order, and clear errors for what cannot be one."""

import numpy as np
import pytest
from PIL import Image

from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.frame_sequences import open_sequence, read_frames


def write_frames(folder, numbers, size=(24, 32), name="shot_{:04d}.png"):
    folder.mkdir(exist_ok=True)
    for number in numbers:
        Image.fromarray(np.full((*size, 3), number * 10 % 256, np.uint8)).save(folder / name.format(number))
    return folder


def test_a_folder_a_frame_or_a_selection_gives_the_frames_in_number_order(tmp_path):
    folder = write_frames(tmp_path / "frames", [9, 10, 11, 8])  # 10 sorts before 8 as text
    (folder / "notes.txt").write_text("not a frame")
    for sequence in (open_sequence(str(folder)), open_sequence(str(folder / "shot_0010.png")),
                     open_sequence("", [str(folder / f"shot_{n:04d}.png") for n in (11, 8, 10, 9)])):
        assert [p[-8:] for p in sequence.files] == ["0008.png", "0009.png", "0010.png", "0011.png"]
        assert sequence.count == 4 and sequence.first_number == 8 and sequence.name == "shot"
    frames = list(read_frames(open_sequence(str(folder))))
    assert [int(frame[0, 0, 0]) for frame in frames] == [80, 90, 100, 110]


def test_a_movie_is_counted_by_decoding_it(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (32, 24))
    for value in (0, 80, 160):
        writer.write(np.full((24, 32, 3), value, np.uint8))
    writer.release()
    sequence = open_sequence(str(path))
    assert (sequence.count, sequence.fps, sequence.name) == (3, 12.0, "clip")
    assert [abs(int(f.mean()) - v) < 4 for f, v in zip(read_frames(sequence), (0, 80, 160))] == [True] * 3


@pytest.mark.parametrize("case,message", [
    ("empty_folder", "holds no images"),
    ("one_frame", "holds 1 frame; a moving relief needs at least 2"),
    ("gap", "numbered one after another, but shot_0002.png is followed by shot_0004.png"),
    ("unnumbered", "has no frame number"),
    ("two_patterns", "named in more than one way"),
    ("corrupt_movie", "cannot open .* as a movie"),
    ("missing", "does not exist"),
])
def test_what_cannot_be_a_sequence_says_why(tmp_path, case, message):
    folder = tmp_path / "frames"
    folder.mkdir()
    path = str(folder)
    if case == "one_frame":
        write_frames(folder, [1])
    elif case == "gap":
        write_frames(folder, [1, 2, 4])
    elif case == "unnumbered":
        Image.new("RGB", (8, 8)).save(folder / "photo.png")
        path = str(folder / "photo.png")
    elif case == "two_patterns":
        write_frames(folder, [1, 2])
        write_frames(folder, [1, 2], name="take_{:03d}.png")
    elif case == "corrupt_movie":
        (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a movie")
        path = str(folder / "clip.mp4")
    elif case == "missing":
        path = str(folder / "gone.mov")
    with pytest.raises(GenPerceptError, match=message):
        open_sequence(path)


def test_a_frame_of_another_size_stops_the_reading_with_its_name(tmp_path):
    folder = write_frames(tmp_path / "frames", [1, 2])
    write_frames(folder, [3], size=(20, 32))
    with pytest.raises(GenPerceptError, match=r"frame 3 \(shot_0003.png\) is 32x20 but the first frame is 32x24"):
        list(read_frames(open_sequence(str(folder))))
