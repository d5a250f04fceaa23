#!/usr/bin/env python3
"""Writes text stubs (.tbd) of the macOS frameworks the addon links, for cross-linking with zig,
which ships libSystem but no frameworks (docs/release.md, "macOS"). Each stub declares the symbols
that the locked version of the framework's Rust binding crate declares (a superset of what the
addon uses; the dynamic loader binds them to the real framework on the Mac).

    python3 scripts/macos-framework-stubs.py OUT_DIR   ->  OUT_DIR/<Framework>.framework/<Framework>.tbd
"""
import json
import pathlib
import re
import subprocess
import sys

# framework -> the -sys crate that declares its C API
FRAMEWORKS = {"Security": "security-framework-sys", "CoreFoundation": "core-foundation-sys"}
EXTERN_BLOCK = re.compile(r'extern\s+"C"\s*\{(.*?)\n\}', re.S)
DECLARATION = re.compile(r"pub\s+(?:fn|static(?:\s+mut)?)\s+([A-Za-z_][A-Za-z0-9_]*)")


def crate_dirs(root):
    """Source directories of the binding crates in the dependency graph for macOS."""
    metadata = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", "aarch64-apple-darwin"],
            cwd=root,
        )
    )
    dirs = {}
    for package in metadata["packages"]:
        if package["name"] in FRAMEWORKS.values():
            dirs[package["name"]] = pathlib.Path(package["manifest_path"]).parent
    return dirs


def declared_symbols(crate_dir):
    symbols = set()
    for source in sorted((crate_dir / "src").rglob("*.rs")):
        for block in EXTERN_BLOCK.findall(source.read_text()):
            symbols.update(DECLARATION.findall(block))
    return sorted(symbols)


def tbd(framework, symbols):
    names = ", ".join(f"_{name}" for name in symbols)
    return (
        "--- !tapi-tbd\n"
        "tbd-version:     4\n"
        "targets:         [ x86_64-macos, arm64-macos ]\n"
        f"install-name:    '/System/Library/Frameworks/{framework}.framework/Versions/A/{framework}'\n"
        "exports:\n"
        "  - targets:         [ x86_64-macos, arm64-macos ]\n"
        f"    symbols:         [ {names} ]\n"
        "...\n"
    )


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    root = pathlib.Path(__file__).resolve().parent.parent
    dirs = crate_dirs(root)
    for framework, crate in FRAMEWORKS.items():
        if crate not in dirs:
            sys.exit(f"{crate} is not in the macOS dependency graph: update FRAMEWORKS in {__file__}")
        symbols = declared_symbols(dirs[crate])
        if not symbols:
            sys.exit(f"found no extern declarations in {dirs[crate]}: the stub of {framework} would be empty")
        target = out / f"{framework}.framework"
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{framework}.tbd").write_text(tbd(framework, symbols))
        print(f"{framework}: {len(symbols)} symbols from {crate} ({dirs[crate].name})", file=sys.stderr)


if __name__ == "__main__":
    main()
