import assert from "node:assert/strict";
import { join } from "node:path";
import {
  chooseTargets,
  compileArgs,
  explainDownloadFailure,
  EXTRA_MODULES,
  PERMISSIONS,
  stampBuild,
  TARGETS,
} from "../scripts/compile.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("compileArgs() bakes in the permissions, the worker, cron and the output name", () => {
  assert.deepEqual(
    compileArgs("x86_64-pc-windows-msvc", {
      entry: "/s/main.ts",
      outDir: "/d",
    }),
    [
      "compile",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-net",
      "--allow-run",
      "--allow-sys=hostname,uid",
      "--include",
      "/s/src/io/worker.ts",
      "--unstable-cron",
      "--no-prompt",
      "--target",
      "x86_64-pc-windows-msvc",
      "--output",
      "/d/image-agent-x86_64-pc-windows-msvc.exe",
      "/s/main.ts",
    ],
  );
  for (const m of EXTRA_MODULES) {
    assert.ok(
      Deno.statSync(join(REPO, m)).isFile,
      `${m} exists to be included`,
    );
  }
  assert.ok(!PERMISSIONS.includes("--allow-all"));
  assert.ok(!PERMISSIONS.some((p) => p.startsWith("--allow-ffi")));
});

Deno.test("chooseTargets() builds all five, or one with DENORT_BIN", () => {
  assert.deepEqual(chooseTargets([], undefined, "x86_64-unknown-linux-gnu"), [
    ...TARGETS,
  ]);
  assert.equal(TARGETS.length, 5);
  assert.deepEqual(
    chooseTargets([], "/opt/denort", "aarch64-unknown-linux-gnu"),
    ["aarch64-unknown-linux-gnu"],
  );
  assert.deepEqual(
    chooseTargets(["x86_64-apple-darwin"], "/opt/denort", "x"),
    ["x86_64-apple-darwin"],
  );
  assert.throws(
    () => chooseTargets(TARGETS.slice(0, 2), "/opt/denort", "x"),
    /one --target at a time/,
  );
  assert.throws(
    () => chooseTargets(["riscv"], undefined, "x"),
    /Unknown target/,
  );
});

Deno.test("stampBuild() replaces the BUILD line and refuses if it moved", () => {
  const source =
    `export const VERSION = "0.1.0";\nexport const BUILD = "dev";\n`;
  assert.equal(
    stampBuild(source, "abc123 2026-12-03"),
    `export const VERSION = "0.1.0";\nexport const BUILD = "abc123 2026-12-03";\n`,
  );
  assert.throws(() => stampBuild("export let BUILD = 1;", "x"), /no line/);
  // The real file still has the line the compile step stamps.
  stampBuild(Deno.readTextFileSync(join(REPO, "src/version.ts")), "x");
});

Deno.test("explainDownloadFailure() names the runtime, the URL and DENORT_BIN", () => {
  const stderr =
    `error: Writing deno compile executable to temporary file 'x'\n\nCaused by:\n    0: Setting up base binary.\n    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-aarch64-apple-darwin.zip): dns error\n`;
  const text = explainDownloadFailure(stderr, "aarch64-apple-darwin", "2.9.6");
  assert.ok(text);
  assert.match(
    text,
    /needs the Deno runtime for aarch64-apple-darwin \(denort 2\.9\.6\)/,
  );
  assert.match(
    text,
    /download https:\/\/dl\.deno\.land\/release\/v2\.9\.6\/denort-aarch64-apple-darwin\.zip/,
  );
  assert.match(
    text,
    /DENORT_BIN=\/path\/to\/denort deno task compile --target aarch64-apple-darwin/,
  );
  assert.equal(
    explainDownloadFailure("error: Module not found", "x", "2"),
    null,
  );
});

Deno.test("deno task compile says clearly what is missing when offline", async () => {
  const target = Deno.build.target;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile", "--target", target],
    cwd: REPO,
    env: { DENORT_BIN: "" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  const binary = join(REPO, "dist", `image-agent-${target}`);
  if (out.success) {
    // With network access the binary is built: check its --version stamp.
    const v = await new Deno.Command(binary, { args: ["--version"] }).output();
    assert.match(
      new TextDecoder().decode(v.stdout),
      /^image-agent \d+\.\d+\.\d+ \([0-9a-f]{7,}/,
    );
    return;
  }
  assert.equal(out.code, 1);
  assert.match(stderr, /could not download it/);
  assert.match(stderr, /DENORT_BIN=\/path\/to\/denort deno task compile/);
  assert.doesNotMatch(stderr, /Stack backtrace/);
});

Deno.test("deno task compile refuses a DENORT_BIN that does not exist", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: REPO,
    env: { DENORT_BIN: "/nonexistent/denort" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 1);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /DENORT_BIN is set to "\/nonexistent\/denort", which does not exist/,
  );
});
