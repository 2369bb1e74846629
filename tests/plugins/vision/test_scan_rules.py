"""vision scan rules: a true positive and a near miss each."""

from __future__ import annotations

import pytest

from pipetune.plugins.vision import scan_rules
from tests.scan.rule_cases import assert_case, findings

CASES = {
    "PT-VIS001": (
        """
        import cv2
        def load(path):
            img = cv2.imread(path)
            return cv2.resize(img, (224, 224))
        """,
        """
        import cv2
        def load(path):
            img = cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_4)
            return cv2.resize(img, (224, 224))
        """,
    ),
    "PT-VIS002": (
        """
        import cv2
        cap = cv2.VideoCapture("clip.mp4")
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            labels.append(model(frame))
        """,
        """
        import cv2
        cap = cv2.VideoCapture("clip.mp4")
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % 5 == 0:
                last = model(frame)
            labels.append(last)
            i += 1
        """,
    ),
    "PT-VIS003": (
        """
        from torch.utils.data import DataLoader
        loader = DataLoader(dataset, batch_size=64)
        """,
        """
        from torch.utils.data import DataLoader
        loader = DataLoader(dataset, batch_size=64, num_workers=4)
        """,
    ),
    "PT-VIS004": (
        """
        from torch.utils.data import DataLoader
        loader = DataLoader(dataset, batch_size=64, num_workers=4)
        model = model.cuda()
        """,
        """
        from torch.utils.data import DataLoader
        loader = DataLoader(dataset, batch_size=64, num_workers=4, pin_memory=True)
        model = model.cuda()
        """,
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_true_positive_and_near_miss(rule):
    hit, miss = CASES[rule]
    assert_case(scan_rules, "vision", rule, hit, miss)


def test_pil_open_resize_small_and_draft_or_large():
    hit = """
    from PIL import Image
    thumb = Image.open(path).convert("RGB").resize((224, 224))
    """
    assert len(findings(scan_rules, "vision", hit, "PT-VIS001")) == 1
    miss = """
    from PIL import Image
    img = Image.open(path)
    img.draft("RGB", (224, 224))
    small = img.resize((224, 224))
    big = Image.open(path).resize((2048, 2048))
    """
    assert findings(scan_rules, "vision", miss, "PT-VIS001") == []


def test_no_pin_memory_finding_without_cuda():
    code = "from torch.utils.data import DataLoader\nloader = DataLoader(ds, num_workers=2)\n"
    assert findings(scan_rules, "vision", code, "PT-VIS004") == []


def test_array_readers_then_a_resize():
    hit = """
    import cv2
    import imageio.v3 as iio
    from skimage import io, transform
    def load(path):
        return cv2.resize(iio.imread(path), (224, 224))
    def load2(path):
        image = io.imread(path)
        image = image[:, :, :3]
        return transform.resize(image, (224, 224))
    """
    found = findings(scan_rules, "vision", hit, "PT-VIS001")
    assert len(found) == 2 and all("IMREAD_REDUCED_COLOR" in f.message for f in found)
    assert "iio.imread" in found[0].message and "io.imread" in found[1].message
    miss = """
    import imageio.v3 as iio
    def load(path):
        image = iio.imread(path)
        image.resize((224, 224))  # numpy's in-place reshape, not an image resize
        return image
    """
    assert findings(scan_rules, "vision", miss, "PT-VIS001") == []


def test_a_decoded_name_carried_through_convert():
    hit = """
    from PIL import Image
    def load(path):
        img = Image.open(path)
        img = img.convert("RGB")
        return img.resize((224, 224))
    """
    assert len(findings(scan_rules, "vision", hit, "PT-VIS001")) == 1
