import assert from "node:assert/strict";
import { join } from "node:path";
import {
  builtProblem,
  chooseTargets,
  compileArgs,
  denortProblem,
  explainDownloadFailure,
  EXTRA_MODULES,
  isDownloadFailure,
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
  assert.ok(isDownloadFailure(stderr));
  assert.equal(isDownloadFailure("error: Module not found"), false);
  const text = explainDownloadFailure(
    stderr,
    ["aarch64-apple-darwin"],
    "2.9.6",
  );
  assert.match(
    text,
    /needs the Deno runtime \(denort 2\.9\.6\) for aarch64-apple-darwin/,
  );
  assert.match(
    text,
    /download\n {7}https:\/\/dl\.deno\.land\/release\/v2\.9\.6\/denort-aarch64-apple-darwin\.zip\n/,
  );
  assert.match(
    text,
    /DENORT_BIN=\/path\/to\/denort deno task compile --target aarch64-apple-darwin/,
  );
  // The Windows runtime is denort.exe.
  assert.match(
    explainDownloadFailure(stderr, ["x86_64-pc-windows-msvc"], "2.9.6"),
    /DENORT_BIN=\/path\/to\/denort\.exe deno task compile --target x86_64-pc-windows-msvc/,
  );
});

Deno.test("denortProblem() and builtProblem() tell deno and other programs from the runtime and the result", () => {
  assert.match(
    denortProblem(
      "deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)\nv8 14",
    )!,
    /the deno command-line tool \("deno 2\.9\.6 \(stable/,
  );
  assert.equal(denortProblem(null), null);
  assert.equal(denortProblem("something else"), null);
  assert.equal(builtProblem("image-agent 0.1.0 (abc 2026-12-04)"), null);
  assert.match(builtProblem("deno 2.9.6")!, /printed "deno 2\.9\.6"/);
  assert.match(builtProblem(null)!, /does not run/);
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

async function compileTask(env: Record<string, string>, args: string[] = []) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile", ...args],
    cwd: REPO,
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(300_000),
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("deno task compile explains a missing runtime once for all targets", async () => {
  const r = await compileTask({ DENORT_BIN: "" });
  if (r.code === 0) return; // with network access every target builds
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr.split("To provide it without network access").length - 1,
    1,
    r.stderr,
  );
  for (const t of TARGETS) {
    if (!r.stderr.includes(`denort-${t}.zip`)) continue; // built after all
    assert.ok(r.stderr.includes(`--target ${t}`), t);
  }
  assert.match(r.stderr, /DENORT_BIN=\/path\/to\/denort\.exe deno task/);
});

Deno.test("deno task compile refuses the deno tool itself as DENORT_BIN", async () => {
  const r = await compileTask({ DENORT_BIN: Deno.execPath() });
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /Cannot build with DENORT_BIN=".*": it is the deno command-line tool \("deno \d/,
  );
  assert.doesNotMatch(r.stderr, /built dist/);
});

Deno.test("deno task compile removes a result that is not image-agent", async () => {
  // Any ELF program is accepted by deno compile as a runtime: the result
  // then runs that program instead of image-agent.
  const dir = await Deno.makeTempDir({ prefix: "ia-denort-" });
  try {
    const fake = join(dir, "denort");
    await Deno.copyFile("/bin/true", fake);
    const r = await compileTask({ DENORT_BIN: fake });
    assert.equal(r.code, 1, r.stderr);
    const name = `image-agent-${Deno.build.target}`;
    assert.match(
      r.stderr,
      new RegExp(
        `Cannot build dist/${name}: the result is not image-agent \\(its --version printed "true`,
      ),
    );
    assert.match(r.stderr, /must be the denort runtime unzipped from denort-/);
    let left = true;
    try {
      await Deno.stat(join(REPO, "dist", name));
    } catch {
      left = false;
    }
    assert.equal(left, false, "the wrong binary is not left in dist/");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
