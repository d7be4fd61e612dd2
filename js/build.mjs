// Bundles every view module in js/src/widgets/ into one ESM file per widget inside the Python package
// (nbmodelhub/widgets/static/), where anywidget loads it from. `npm run build` (the dev install and the
// wheel build run it; users never do). `--watch` rebuilds on change.
import { build, context } from "esbuild";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "js", "src", "widgets");
const entryPoints = readdirSync(src)
  .filter((f) => f.endsWith(".ts"))
  .map((f) => join(src, f));

const options = {
  entryPoints,
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  sourcemap: false,
  outdir: join(root, "nbmodelhub", "widgets", "static"),
  logLevel: process.argv.includes("--log-level=warning") ? "warning" : "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await context(options);
  await ctx.watch();
} else {
  await build(options);
}
