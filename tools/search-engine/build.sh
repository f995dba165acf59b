#!/usr/bin/env bash
# Builds the embedded search engine, only when needed, and prints the path of
# target/classpath.txt: one line, usable as `java -cp "$(cat target/classpath.txt)"`.
#
# Also (unless ASCI_SEARCH_CDS=0) makes a class-data-sharing archive of the classes
# loaded while the node starts, and writes the JVM flag that uses it to
# target/jvm-options.txt (one line; empty when there is no archive). With it the
# node starts in about half the time. The archive only fits the `java` that made
# it; any other JVM ignores it (with a warning on stderr) and starts normally.
#
# Re-running is cheap: Maven runs only when target/ is incomplete or older than
# pom.xml, build.sh or src/. Works offline once ~/.m2 holds the dependencies.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

target="$here/target"
jar="$target/asci-search-engine.jar"
stamp="$target/.build-stamp"
cp_file="$target/classpath.txt"
opts_file="$target/jvm-options.txt"
jsa="$target/search-engine.jsa"
classpath="$jar:$target/lib/*"
java_bin="${JAVA:-java}"

needs_build() {
    [[ -d "$target/lib" && -f "$jar" && -f "$stamp" && -f "$cp_file" && -f "$opts_file" ]] || return 0
    # classpath.txt holds absolute paths: rebuild if this folder was moved
    [[ "$(cat "$cp_file")" == "$classpath" ]] || return 0
    [[ "$here/pom.xml" -nt "$stamp" ]] && return 0
    [[ "$here/build.sh" -nt "$stamp" ]] && return 0
    [[ -z "$(find "$here/src" -newer "$stamp" -print -quit)" ]] || return 0
    # a jar rebuilt behind our back (plain `mvn package`) would also void the CDS archive
    [[ -z "$(find "$jar" "$target/lib" -newer "$stamp" -print -quit)" ]] || return 0
    return 1
}

# Start the node once with -XX:ArchiveClassesAtExit, stop it, keep the archive.
make_cds_archive() {
    local home pid ok=0 i
    home="$(mktemp -d "${TMPDIR:-/tmp}/asci-search-cds.XXXXXX")"
    rm -f "$jsa"   # a running JVM keeps its mapping of the old file
    "$java_bin" -Xms512m -Xmx512m -XX:ArchiveClassesAtExit="$jsa" -cp "$classpath" \
        org.asci.search.SearchEngine --home "$home" --http-port 0 --transport-port 0 \
        >"$home/out.txt" 2>"$home/err.txt" &
    pid=$!
    for ((i = 0; i < 1200; i++)); do   # up to 120 s
        if grep -q 'ASCI-SEARCH-ENGINE READY' "$home/out.txt" 2>/dev/null; then ok=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [[ $ok == 1 && -s "$jsa" ]]; then
        rm -rf "$home"
        return 0
    fi
    echo "build.sh: no class-data-sharing archive (not fatal); see $home/err.txt" >&2
    rm -f "$jsa"
    return 1
}

# Several test processes may call this at once: one builds, the others wait.
mkdir -p "$target"
if command -v flock >/dev/null; then
    exec 9>"$target/.build-lock"
    flock 9
fi

if needs_build; then
    command -v mvn >/dev/null || { echo "build.sh: mvn not found (apt-get install maven)" >&2; exit 1; }
    command -v "$java_bin" >/dev/null || { echo "build.sh: java not found (Java 17+ needed)" >&2; exit 1; }
    rm -f "$stamp" "$cp_file" "$opts_file"
    mvn_args=(-q -B package -DskipTests)
    # Offline first: works without network once ~/.m2 has everything, and is faster.
    if ! mvn -o "${mvn_args[@]}" >/dev/null 2>&1; then
        mvn "${mvn_args[@]}"
    fi
    # Jars of an older pom must not linger on the classpath. (Pruning afterwards rather
    # than emptying lib/ first keeps a node that runs from this classpath undisturbed.)
    keep="$(tr ':' '\n' < "$target/dependency-classpath.txt" | sed 's#.*/##')"
    for f in "$target"/lib/*; do
        grep -qxF "$(basename "$f")" <<<"$keep" || rm -f "$f"
    done
    printf '%s\n' "$classpath" > "$cp_file"
    if [[ "${ASCI_SEARCH_CDS:-1}" != 0 ]] && make_cds_archive; then
        printf '%s\n' "-XX:SharedArchiveFile=$jsa" > "$opts_file"
    else
        : > "$opts_file"
    fi
    touch "$stamp"
fi

echo "$cp_file"
