/**
 * `deno task compile [--target T]...`: builds `dist/image-agent-<target>[.exe]`
 * for every server platform, with the permissions the agent needs baked in
 * and the build's commit stamped into `BUILD` (shown by `--version`).
 *
 * The stamp is written into a staged copy of the sources (dist/.stage), so
 * the working tree keeps `BUILD = "dev"`.
 *
 * `deno compile` downloads the runtime (`denort`) for each target from
 * dl.deno.land the first time. Without that network, set `DENORT_BIN` to a
 * denort binary obtained elsewhere; deno compile then uses it instead of
 * downloading. That binary is for one platform, so with `DENORT_BIN` only
 * one target is built (the one given with --target, or this machine's).
 * deno compile accepts any program there, the deno CLI included, so the
 * deno CLI is refused, and a binary built for this machine must answer
 * `--version` with "image-agent " or it is removed.
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-pc-windows-msvc",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

/**
 * The permissions baked into the binary, each for a reason. Paths and hosts
 * come from the config at run time, so they cannot be narrowed here.
 */
export const PERMISSIONS = [
  // The config, the shop's SQLite file, images.root, state.dir, the local
  // backup folder, and /run/systemd/system to detect the scheduler.
  "--allow-read",
  // Deleting cleaned images, restoring them, the ledger and lock in
  // state.dir, the local backup copy, and the scheduler files of `install`.
  "--allow-write",
  // IMAGE_AGENT_CONFIG, IMAGE_AGENT_TRIGGER, ProgramData on Windows, and the
  // database password variable named by database.passwordEnv.
  "--allow-env",
  // The Baidu Netdisk API and PostgreSQL/MySQL servers named in the config.
  "--allow-net",
  // `install`/`uninstall` run systemctl, schtasks or launchctl.
  "--allow-run",
  // The host name written into the run lock (node:os hostname), and
  // Deno.uid() for install's "needs root" check; nothing else of the system.
  "--allow-sys=hostname,uid",
];

export interface CompileOptions {
  /** Staged entry point. */
  entry: string;
  /** Output folder. */
  outDir: string;
}

export function outputName(target: string): string {
  return `image-agent-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/**
 * Modules the entry does not import statically, which `deno compile` leaves
 * out unless named: the I/O worker (src/io/pool.ts starts it by URL).
 */
export const EXTRA_MODULES = ["src/io/worker.ts"];

/** The `deno compile` arguments for one target. */
export function compileArgs(target: string, options: CompileOptions): string[] {
  return [
    "compile",
    ...PERMISSIONS,
    ...EXTRA_MODULES.flatMap((
      m,
    ) => ["--include", join(dirname(options.entry), m)]),
    // Deno.cron: the daemon's timer, a tick every UTC minute (see
    // src/schedule/ticks.ts); without it 'image-agent daemon' cannot start.
    "--unstable-cron",
    "--no-prompt",
    "--target",
    target,
    "--output",
    join(options.outDir, outputName(target)),
    options.entry,
  ];
}

/** The targets to build, from --target flags and DENORT_BIN. */
export function chooseTargets(
  requested: string[],
  denortBin: string | undefined,
  hostTarget: string,
): string[] {
  for (const t of requested) {
    if (!(TARGETS as readonly string[]).includes(t)) {
      throw new Error(
        `Unknown target "${t}" (known: ${TARGETS.join(", ")})`,
      );
    }
  }
  if (denortBin) {
    if (requested.length > 1) {
      throw new Error(
        "DENORT_BIN is one runtime for one platform: build one --target at a time",
      );
    }
    return requested.length === 1 ? requested : [hostTarget];
  }
  return requested.length > 0 ? requested : [...TARGETS];
}

/** Sets BUILD in version.ts source text; throws if the line moved. */
export function stampBuild(source: string, build: string): string {
  const line = /^export const BUILD = "[^"]*";$/m;
  if (!line.test(source)) {
    throw new Error(
      `src/version.ts has no line 'export const BUILD = "...";' to stamp`,
    );
  }
  return source.replace(line, `export const BUILD = ${JSON.stringify(build)};`);
}

/** Is this `deno compile` failure the runtime download? */
export function isDownloadFailure(stderr: string): boolean {
  return /dl\.deno\.land|denort|error sending request|dns error/i.test(stderr);
}

/**
 * Says what is missing when `deno compile` could not download the runtime
 * for some targets: one explanation for all of them.
 */
export function explainDownloadFailure(
  stderr: string,
  targets: string[],
  denoVersion: string,
): string {
  const url = (t: string) =>
    `https://dl.deno.land/release/v${denoVersion}/denort-${t}.zip`;
  const file = (t: string) => `denort${t.includes("windows") ? ".exe" : ""}`;
  const cause = stderr.split("\n").find((l) => /error sending request/.test(l))
    ?.trim() ?? stderr.trim().split("\n")[0];
  const one = targets.length === 1;
  return `Cannot build ${
    one ? outputName(targets[0]) : `${targets.length} targets`
  }: deno compile needs the Deno runtime (denort ${denoVersion}) for ${
    one ? targets[0] : "each target"
  } and could not download it.
  cause: ${cause}
To provide it without network access here:
  1. on a machine with internet, download
${targets.map((t) => `       ${url(t)}`).join("\n")}
  2. copy ${one ? "it" : "them"} here and unzip ${
    one ? "it" : "each"
  } (one file: ${[...new Set(targets.map(file))].join(" or ")})
  3. build ${one ? "that target" : "one target at a time"} with it:
${
    targets.map((t) =>
      `       DENORT_BIN=/path/to/${file(t)} deno task compile --target ${t}`
    ).join("\n")
  }
Or copy a DENO_DIR in which 'deno compile --target ...' already ran for
${
    one
      ? "that target"
      : "these targets"
  } (its dl/ folder holds the runtime) and set DENO_DIR to it.`;
}

/** What a program prints for `--version`, or null when it cannot run here. */
async function versionOf(program: string): Promise<string | null> {
  try {
    const out = await new Deno.Command(program, {
      args: ["--version"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return null;
  }
}

/**
 * Why DENORT_BIN is not the runtime, or null when nothing says so: the deno
 * command-line tool itself is the usual mistake, and deno compile takes it
 * without complaint.
 */
export function denortProblem(version: string | null): string | null {
  if (version === null || !/^deno \d/.test(version)) return null;
  return `it is the deno command-line tool ("${
    version.split("\n")[0]
  }"), not the denort runtime`;
}

/**
 * Why a built binary is not image-agent, or null when it is: its
 * `--version` must start with "image-agent ".
 */
export function builtProblem(version: string | null): string | null {
  if (version !== null && version.startsWith("image-agent ")) return null;
  return version === null
    ? "it does not run"
    : `its --version printed "${version.split("\n")[0]}"`;
}

async function git(args: string[], cwd: string): Promise<string> {
  try {
    const out = await new Deno.Command("git", {
      args,
      cwd,
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : "";
  } catch {
    return "";
  }
}

/** `0.1.0+abc1234` style stamp: commit, `-dirty` for local changes, date. */
async function buildStamp(repo: string, now: Date): Promise<string> {
  const commit = await git(["rev-parse", "--short=12", "HEAD"], repo);
  const dirty =
    (await git(["status", "--porcelain", "--untracked-files=no"], repo))
      ? "-dirty"
      : "";
  const date = now.toISOString().slice(0, 10);
  return `${commit || "unknown-commit"}${dirty} ${date}`;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const a = join(from, entry.name);
    const b = join(to, entry.name);
    if (entry.isDirectory) await copyTree(a, b);
    else if (entry.isFile) await Deno.copyFile(a, b);
  }
}

async function main(args: string[]): Promise<number> {
  const repo = dirname(dirname(fileURLToPath(import.meta.url)));
  const requested: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--target" && args[i + 1]) requested.push(args[++i]);
    else if (args[i].startsWith("--target=")) requested.push(args[i].slice(9));
    else {
      console.error(
        `Unknown argument "${
          args[i]
        }"; usage: deno task compile [--target T]...`,
      );
      return 2;
    }
  }
  const denortBin = Deno.env.get("DENORT_BIN") || undefined;
  if (denortBin) {
    try {
      Deno.statSync(denortBin);
    } catch {
      console.error(
        `DENORT_BIN is set to "${denortBin}", which does not exist: point it at an unzipped denort binary`,
      );
      return 1;
    }
    const problem = denortProblem(await versionOf(denortBin));
    if (problem) {
      console.error(
        `Cannot build with DENORT_BIN="${denortBin}": ${problem}. Set it to the denort file unzipped from denort-<target>.zip (see docs/schedule.md)`,
      );
      return 1;
    }
  }
  let targets: string[];
  try {
    targets = chooseTargets(requested, denortBin, Deno.build.target);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }

  const outDir = join(repo, "dist");
  const stage = join(outDir, ".stage");
  await Deno.remove(stage, { recursive: true }).catch(() => {});
  await copyTree(join(repo, "src"), join(stage, "src"));
  for (const f of ["main.ts", "deno.json", "deno.lock"]) {
    await Deno.copyFile(join(repo, f), join(stage, f)).catch(() => {});
  }
  const build = await buildStamp(repo, new Date());
  const versionFile = join(stage, "src", "version.ts");
  await Deno.writeTextFile(
    versionFile,
    stampBuild(await Deno.readTextFile(versionFile), build),
  );
  console.error(`Build ${build}; targets: ${targets.join(", ")}`);

  let failed = 0;
  // The download explanation is printed once, after all targets.
  const notDownloaded: string[] = [];
  let downloadStderr = "";
  for (const target of targets) {
    // DENORT_BIN passes through in the inherited environment.
    const out = await new Deno.Command(Deno.execPath(), {
      args: compileArgs(target, { entry: join(stage, "main.ts"), outDir }),
      cwd: stage,
      stdout: "inherit",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.success) {
      const built = join(outDir, outputName(target));
      // A binary for this machine can be run: it must be image-agent, which
      // it is not when DENORT_BIN was some other program.
      const problem = target === Deno.build.target
        ? builtProblem(await versionOf(built))
        : null;
      if (problem) {
        failed++;
        await Deno.remove(built).catch(() => {});
        console.error(
          `Cannot build dist/${
            outputName(target)
          }: the result is not image-agent (${problem}), so it was removed.${
            denortBin
              ? ` DENORT_BIN="${denortBin}" must be the denort runtime unzipped from denort-${target}.zip.`
              : ""
          }`,
        );
        continue;
      }
      console.error(`built dist/${outputName(target)}`);
      continue;
    }
    failed++;
    if (isDownloadFailure(stderr)) {
      notDownloaded.push(target);
      downloadStderr ||= stderr;
      continue;
    }
    console.error(`deno compile failed for ${target}:\n${stderr}`);
  }
  if (notDownloaded.length > 0) {
    console.error(
      explainDownloadFailure(downloadStderr, notDownloaded, Deno.version.deno),
    );
  }
  await Deno.remove(stage, { recursive: true }).catch(() => {});
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
