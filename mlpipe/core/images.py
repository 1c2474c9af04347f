"""SageMaker's prebuilt inference images: a framework shorthand resolved for the target region.

`sklearn:1.2-1` or `pytorch:2.0` name the prebuilt image of that framework version in the
registry account AWS publishes it from in the target region (the accounts of the SageMaker
Python SDK's `image_uri_config/sklearn.json` and of the Deep Learning Containers); anything else
is a full image URI. SageMaker pulls no ECR image across regions (`CreateModel`: "Cross region
ECR image pulls are not allowed"), so an ECR URI of another region is refused before any write.
"""

from __future__ import annotations

import re
from typing import Any

from mlpipe.core.errors import SpecError

SHORTHAND = re.compile(r"^(?P<framework>[a-z]+):(?P<version>[0-9][0-9A-Za-z.-]*)$")
ECR = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")

_SKLEARN_ACCOUNTS = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "341280168497",
    "cn-north-1": "450853457545",
    "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770",
    "eu-central-2": "680994064768",
    "eu-north-1": "662702820516",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "eu-south-1": "978288397137",
    "eu-south-2": "104374241257",
    "me-south-1": "801668240914",
    "me-central-1": "272398656194",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-gov-west-1": "414596584902",
    "us-gov-east-1": "237065988967",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}
_DLC = "763104351884"
_DLC_ACCOUNTS = {
    **dict.fromkeys(
        (
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "ca-central-1",
            "eu-central-1",
            "eu-north-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "sa-east-1",
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
        ),
        _DLC,
    ),
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}
# framework → (registry accounts by region, repository, tag for a version)
FRAMEWORKS = {
    "sklearn": (_SKLEARN_ACCOUNTS, "sagemaker-scikit-learn", "{}-cpu-py3"),
    "pytorch": (_DLC_ACCOUNTS, "pytorch-inference", "{}-cpu-py310"),
}


def check(image: str) -> str:
    """The spec's check, before the region is known: a known framework or a URI."""
    match = SHORTHAND.match(image)
    if match and match.group("framework") not in FRAMEWORKS:
        raise ValueError(
            f"unknown framework {match.group('framework')!r}: use "
            f"{' or '.join(f'{f}:VERSION' for f in FRAMEWORKS)}, or a full image URI"
        )
    if not match and "/" not in image:
        raise ValueError(f"{image!r} is neither sklearn:VERSION, pytorch:VERSION nor an image URI")
    return image


def model_image(models: Any, version: str, region: str) -> str:
    """A declared version's image URI in `region`: its own, else the spec's."""
    own = models.versions[version].image
    key = f"models.versions.{version}.image" if own else "models.image"
    return resolve(key, own or models.image, region)


def resolve(key: str, image: str, region: str) -> str:
    """The image URI SageMaker pulls in `region`; a spec error naming `key` if there is none."""
    match = SHORTHAND.match(image)
    if match:
        accounts, repository, tag = FRAMEWORKS[match.group("framework")]
        if region not in accounts:
            raise SpecError([f"{key}: {image} has no prebuilt image in {region}: give a full URI"])
        suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
        version = tag.format(match.group("version"))
        return f"{accounts[region]}.dkr.ecr.{region}{suffix}/{repository}:{version}"
    ecr = ECR.match(image)
    if ecr and ecr.group("region") != region:
        raise SpecError(
            [
                f"{key}: {image} is in {ecr.group('region')}, but the pipeline is in {region}: "
                "SageMaker pulls no image across regions; use a shorthand such as sklearn:1.2-1 "
                f"or the image's {region} URI"
            ]
        )
    return image
