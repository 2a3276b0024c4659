// MicroPython 1.27 (the WebAssembly port from npm) with keystrap's node core in it.
//
// The node core's files (keystrap/nodecore/*.py) are copied unmodified into the
// interpreter's filesystem as the package `nodecore`. Then either
//
//   node micropython_host.mjs serve
//       writes "ready" and the interpreter's version on one line, then answers
//       each request line on stdin with one line on stdout, through
//       nodecore.host_link.handle (the protocol is described there); or
//   node micropython_host.mjs run FILE...
//       executes each file in its own call into the interpreter, so that a
//       garbage collection asked for in one file has taken effect in the next
//       (in this port gc.collect() only runs once control is back in JS).
//
// Whatever the Python code prints goes to stderr in `serve` mode, stdout in `run`.
// Exit status 2, with one line on stderr, if MicroPython raises.

import { readFileSync, readdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const here = dirname(fileURLToPath(import.meta.url));
const coreDir = join(here, "..", "nodecore");
const [mode, ...files] = process.argv.slice(2);
if (mode !== "serve" && !(mode === "run" && files.length > 0)) {
  process.stderr.write("usage: micropython_host.mjs serve | run FILE...\n");
  process.exit(2);
}

const print = mode === "serve" ? (line) => process.stderr.write(line + "\n") : (line) => process.stdout.write(line + "\n");
const mp = await loadMicroPython({ stdout: print, stderr: (line) => process.stderr.write(line + "\n") });
mp.FS.mkdirTree("/lib/nodecore");
for (const name of readdirSync(coreDir)) {
  if (name.endsWith(".py")) {
    mp.FS.writeFile(`/lib/nodecore/${name}`, readFileSync(join(coreDir, name)));
  }
}

function fail(error) {
  const lines = String(error.message ?? error).trim().split("\n");
  process.stderr.write(`micropython: ${lines[lines.length - 1]}\n`);
  process.exit(2);
}

if (mode === "run") {
  try {
    for (const file of files) {
      mp.runPython(readFileSync(file, "utf8"));
    }
  } catch (error) {
    fail(error);
  }
} else {
  let handle;
  try {
    handle = mp.pyimport("nodecore.host_link").handle;
  } catch (error) {
    fail(error);
  }
  const version = mp.pyimport("sys").version.split("; ").pop().split(" on ")[0];
  process.stdout.write(`ready ${version}\n`);
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    let reply;
    try {
      reply = handle(line);
    } catch (error) {
      reply = "error " + String(error.message ?? error).trim().split("\n").pop();
    }
    process.stdout.write(reply + "\n");
  }
}
