"""Wrong registry clients of lab 26: each trusts the registry somewhere it must not, or
asks it the wrong way."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "blobs checked by size only, never hashed",
        "fetch_image.py",
        "digest",
        edits=(
            (
                '    if digest_of(data) != descriptor["digest"]:\n',
                "    if False:\n",
            ),
        ),
    ),
    Mutant(
        "the manifest asked for without an Accept header",
        "fetch_image.py",
        "accept",
        edits=(
            (
                '/manifests/{tag}", MEDIA_MANIFEST, MAX_DOCUMENT)\n',
                '/manifests/{tag}", None, MAX_DOCUMENT)\n',
            ),
        ),
    ),
    Mutant(
        "the manifest's digest taken of its JSON parsed and written again",
        "fetch_image.py",
        "as received",
        edits=(
            (
                "    return data, digest_of(data)\n",
                "    return data, digest_of(json.dumps(json.loads(data)).encode())\n",
            ),
        ),
    ),
]
