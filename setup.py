"""pip install --no-build-isolation .   (Debian: python3-setuptools, pybind11-dev, python3-dev, cmake)

Builds the extension rechub._rechub with CMake (the library and python/src/module.cpp; no tests,
benchmarks or examples) and installs it with the pure-Python modules of python/rechub. No network
is needed. RECHUB_CMAKE_BUILD_DIR=<an already configured build tree> reuses that tree's build of
the extension instead of configuring a new one (the install test does; so can a developer).
RECHUB_CMAKE_ARGS adds CMake arguments (e.g. "-DRECHUB_CUDA=OFF -DRECHUB_NATIVE=OFF").
"""
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.environ.get("RECHUB_CMAKE_BUILD_DIR")
        if not build_dir:
            build_dir = os.path.join(ROOT, "build", "pip-cmake")
            args = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DRECHUB_BUILD_TESTS=OFF", "-DRECHUB_BUILD_BENCH=OFF", "-DRECHUB_BUILD_EXAMPLES=OFF",
                    "-DRECHUB_PYTHON_PACKAGE=ON", f"-DPYTHON_EXECUTABLE={sys.executable}"]
            if shutil.which("ccache"):
                args += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
            args += shlex.split(os.environ.get("RECHUB_CMAKE_ARGS", ""))
            subprocess.run(args, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", build_dir, "--target", "_rechub", "-j", jobs], check=True)
        pkg = os.path.join(build_dir, "python", "rechub")
        built = [f for f in os.listdir(pkg) if f.startswith("_rechub") and f.endswith(".so")]
        if len(built) != 1:
            raise RuntimeError(f"expected one _rechub*.so in {pkg}, found {built}")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(os.path.join(pkg, built[0]), dest)


setup(
    name="rechub",
    version="0.1.0",
    description="Multi-task recommendation models (MMoE, PLE, ESMM, ...) on rechub's C++ engine, "
                "with torch-rechub's Python API",
    python_requires=">=3.9",
    install_requires=["numpy"],
    package_dir={"": "python"},
    packages=find_packages("python"),
    package_data={"": ["py.typed", "*.pyi"]},
    ext_modules=[CMakeExtension("rechub._rechub")],
    cmdclass={"build_ext": CMakeBuild},
    options={"build": {"build_base": os.path.join("build", "setuptools")},
             "egg_info": {"egg_base": os.path.join("build")}},
    zip_safe=False,
)
