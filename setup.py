"""Builds the one extension module, fulmen._core, from src/fulmen/_core/*.c.

Build variants come from the environment:
  FULMEN_DEBUG=1                        -O1 -g, frame pointers, assertions on internal invariants
  FULMEN_SANITIZE=address,undefined     sanitizer build (see `make asan`)
"""
import glob
import os

from setuptools import Extension, setup

debug = os.environ.get("FULMEN_DEBUG") == "1"
sanitize = os.environ.get("FULMEN_SANITIZE", "")

cflags = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fvisibility=hidden",
          "-Werror=implicit-function-declaration", "-Werror=int-conversion",
          # gcc expands memcpy/memset of a bounded size as `rep movs/stos`,
          # whose start-up costs tens of cycles on the per-request path:
          # vector moves up to 256 bytes, libc beyond
          "-mmemcpy-strategy=vector_loop:256:noalign,libcall:-1:noalign",
          "-mmemset-strategy=vector_loop:256:noalign,libcall:-1:noalign"]
ldflags = []
if debug or sanitize:
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer"]
else:
    cflags += ["-O3", "-DNDEBUG"]
if sanitize:
    cflags += ["-fsanitize=" + sanitize, "-fno-sanitize-recover=undefined"]
    ldflags += ["-fsanitize=" + sanitize]

setup(
    ext_modules=[
        Extension(
            "fulmen._core",
            sources=sorted(glob.glob("src/fulmen/_core/*.c")),
            depends=glob.glob("src/fulmen/_core/*.h"),
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            libraries=["z",  # permessage-deflate
                       "ssl", "crypto"],  # TLS in C (tls.c)
        )
    ],
)
