"""The published files of each downloadable data set: URLs, sizes and MD5 checksums.

Every URL and MD5 below is copied from torchvision 0.29.1 (the version pinned in
requirements.txt), ``torchvision/datasets/``: ``mnist.py`` (``MNIST.mirrors[0]`` and
``MNIST.resources``; ``FashionMNIST.mirrors`` and ``FashionMNIST.resources``), ``cifar.py``
(``CIFAR10.url``/``tgz_md5``, its ``train_list``/``test_list``/``meta``; the same for
``CIFAR100``) and ``stl10.py`` (``STL10.url``/``tgz_md5``, ``train_list``/``test_list``). The
archives' checksums are verified on download; the checksums of the files inside an archive
(torchvision's per-file lists) after extraction. Sizes are the published files' sizes in bytes
(as the publishers' servers report them; not part of torchvision): they check the free disk
space and give the progress bar a total where a server sends no length. Only the MD5 decides
whether a file is accepted.

:mod:`.download` fetches these; this module is only the table, so the loaders can name the
download in their messages without importing any network code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FETCH_HINT", "RELEASES", "Release", "Remote"]

#: Appended to the "files not found" messages of the downloadable data sets (one sentence).
FETCH_HINT = ("or fetch them with --download (the Train page's Download button): nothing is fetched from the "
              "network unless you ask")


@dataclass(frozen=True)
class Remote:
    """One published file.

    Attributes:
        url: where the publisher serves it (``HCL_DATA_MIRROR`` replaces the scheme and host).
        md5: its MD5 checksum.
        size: its size in bytes.
        into: the folder under the data root it lands in (kept as is), or ``""`` for an archive
            unpacked into the data root.
        archive: a ``.tar.gz`` to unpack (and then delete); otherwise the file is kept as it is.
    """

    url: str
    md5: str
    size: int
    into: str = ""
    archive: bool = False

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Release:
    """What downloading one data set fetches and leaves on disk.

    Attributes:
        files: the published files.
        unpacked: ``(path under the data root, MD5)`` of the files an archive holds, verified
            after extraction.
        disk_bytes: bytes on disk once downloaded (archives unpacked and deleted): at least the
            images and labels the format stores, which the free-space check adds to the download.
        source: where the URLs and checksums were copied from.
    """

    files: tuple[Remote, ...]
    unpacked: tuple[tuple[str, str], ...] = ()
    disk_bytes: int = 0
    source: str = ""

    @property
    def download_bytes(self) -> int:
        return sum(f.size for f in self.files)


_MNIST_HOST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_HOST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz")


def _idx_release(host: str, folder: str, md5s: tuple[str, ...], sizes: tuple[int, ...], source: str) -> Release:
    files = tuple(Remote(host + name, md5, size, into=f"{folder}/raw")
                  for name, md5, size in zip(_IDX, md5s, sizes, strict=True))
    return Release(files, disk_bytes=sum(sizes), source=source)


RELEASES: dict[str, Release] = {
    "mnist": _idx_release(
        _MNIST_HOST, "MNIST",
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432", "9fb629c4189551a2d022fa330f9573f3",
         "ec29112dd5afa0611ce80d1b7f02629c"),
        (9_912_422, 28_881, 1_648_877, 4_542),
        "torchvision 0.29.1, datasets/mnist.py: MNIST.mirrors[0], MNIST.resources"),
    "fashion_mnist": _idx_release(
        _FASHION_HOST, "FashionMNIST",
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe", "bef4ecab320f06d8554ea6380940ec79",
         "bb300cfdad3c16e7a12a480ee83cd310"),
        (26_421_880, 29_515, 4_422_102, 5_148),
        "torchvision 0.29.1, datasets/mnist.py: FashionMNIST.mirrors, FashionMNIST.resources"),
    "cifar10": Release(
        (Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                170_498_071, archive=True),),
        unpacked=(("cifar-10-batches-py/data_batch_1", "c99cafc152244af753f735de768cd75f"),
                  ("cifar-10-batches-py/data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                  ("cifar-10-batches-py/data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                  ("cifar-10-batches-py/data_batch_4", "634d18415352ddfa80567beed471001a"),
                  ("cifar-10-batches-py/data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                  ("cifar-10-batches-py/test_batch", "40351d587109b95175f43aff81a1287e"),
                  ("cifar-10-batches-py/batches.meta", "5ff9c542aee3614f3951f8cda6e48888")),
        disk_bytes=60_000 * (3 * 32 * 32 + 1),  # pixels and one label byte per image
        source="torchvision 0.29.1, datasets/cifar.py: CIFAR10.url, tgz_md5, train_list, test_list, meta"),
    "cifar100": Release(
        (Remote("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                169_001_437, archive=True),),
        unpacked=(("cifar-100-python/train", "16019d7e3df5f24257cddd939b257f8d"),
                  ("cifar-100-python/test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
                  ("cifar-100-python/meta", "7973b15100ade9c7d40fb424638fde48")),
        disk_bytes=60_000 * (3 * 32 * 32 + 2),  # pixels, coarse and fine labels
        source="torchvision 0.29.1, datasets/cifar.py: CIFAR100.url, tgz_md5, train_list, test_list, meta"),
    "stl10": Release(
        (Remote("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb",
                2_640_397_119, archive=True),),
        unpacked=(("stl10_binary/train_X.bin", "918c2871b30a85fa023e0c44e0bee87f"),
                  ("stl10_binary/train_y.bin", "5a34089d4802c674881badbb80307741"),
                  ("stl10_binary/unlabeled_X.bin", "5242ba1fed5e4be9e1e742405eb56ca4"),
                  ("stl10_binary/test_X.bin", "7f263ba9f9e0b06b93213547f721ac82"),
                  ("stl10_binary/test_y.bin", "36f9794fa4beb8a2c72628de14fa638e")),
        disk_bytes=113_000 * 3 * 96 * 96 + 13_000,  # 113,000 images, 13,000 label bytes
        source="torchvision 0.29.1, datasets/stl10.py: STL10.url, tgz_md5, train_list, test_list"),
}
