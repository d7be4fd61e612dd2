// Builds the prebuilt JupyterLab extension into nbmodelhub/labextension/ (the wheel ships it, so users never
// run npm). Two steps: esbuild bundles js/src/lab/index.ts with our views into js/lib/lab/index.js, leaving
// JupyterLab's own packages external; then JupyterLab's builder wraps that file as a federated module that
// shares those packages with the running Lab. `npm run build` runs this after js/build.mjs.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const quiet = process.argv.includes("--log-level=warning") || process.env.npm_config_loglevel === "silent";

// The builder takes ~15 s: skip it when the built extension is newer than every source it is made from.
function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((f) => newest(join(path, f))));
}
const built = join(root, "nbmodelhub", "labextension", "package.json");
const sources = [join(root, "js", "src"), join(root, "js", "build-lab.mjs"), join(root, "package.json")];
if (!process.argv.includes("--force") && existsSync(built) && statSync(built).mtimeMs > Math.max(...sources.map(newest))) {
  if (!quiet) console.log("lab extension is up to date (--force rebuilds it)");
  process.exit(0);
}

await build({
  entryPoints: [join(root, "js", "src", "lab", "index.ts")],
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: false,
  outfile: join(root, "js", "lib", "lab", "index.js"),
  external: ["@jupyterlab/*", "@lumino/*"],
  logLevel: quiet ? "warning" : "info",
});

// The builder wants the core package's metadata as <dir>/package.json; @jupyterlab/core-meta ships it offline
// (without it the builder tries to download it).
const core = mkdtempSync(join(tmpdir(), "nbmh-core-"));
try {
  copyFileSync(join(root, "node_modules", "@jupyterlab", "core-meta", "core.package.json"), join(core, "package.json"));
  const builder = join(root, "node_modules", "@jupyterlab", "builder", "lib", "build-labextension.js");
  const run = spawnSync(process.execPath, [builder, "--core-path", core, root], {
    cwd: root,
    stdio: quiet ? ["ignore", "pipe", "pipe"] : "inherit",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0) {
    if (quiet) process.stderr.write(`${run.stdout}${run.stderr}`); // the builder's log, only when it failed
    process.exit(run.status ?? 1);
  }
} finally {
  rmSync(core, { recursive: true, force: true });
}
