/**
 * `install` and `uninstall`: put the scheduler files of this machine in
 * place and register them, or take them away again.
 *
 * Every step is first written down as a plan (files with their modes,
 * commands), so `--dry-run` shows exactly what would happen and changes
 * nothing. Commands go through an injected runner and files are written
 * under an injectable root folder, so tests run the whole thing in a temp
 * folder. Both directions are idempotent: installing twice leaves one entry,
 * and uninstalling what is not there says so and succeeds.
 *
 * | scheduler | files | registration |
 * | --- | --- | --- |
 * | systemd | /etc/systemd/system/image-agent.{service,timer} | systemctl daemon-reload; enable --now |
 * | cron | /etc/cron.d/image-agent | none: cron reads the folder |
 * | windows | image-agent.xml beside the config | schtasks /Create /XML ... /F |
 * | launchd | /Library/LaunchDaemons/com.image-agent.nightly.plist | launchctl bootstrap system |
 */

import { dirname, join } from "node:path";
import { AgentError, EXIT_FAILED, EXIT_USAGE } from "../errors.ts";
import {
  schedulerFiles,
  type SchedulerFormat,
  type ScheduleTarget,
} from "./files.ts";
import { CRON_D_NAME } from "./crontab.ts";
import { LAUNCHD_LABEL, PLIST_FILE } from "./launchd.ts";
import { SERVICE_NAME, TIMER_NAME } from "./systemd.ts";
import { TASK_FILE, TASK_NAME } from "./windows.ts";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one program with arguments; never throws for a non-zero exit. */
export type CommandRunner = (
  program: string,
  args: string[],
) => Promise<CommandResult>;

/** The real runner: `Deno.Command`, output captured. */
export const denoCommandRunner: CommandRunner = async (program, args) => {
  try {
    const out = await new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${program}: not found` };
    }
    throw err;
  }
};

/** A command of the plan. */
export interface PlannedCommand {
  program: string;
  args: string[];
  /** A failure is reported but does not stop the plan. */
  optional?: boolean;
  /** Run only when this probe succeeds (exit 0). */
  onlyIf?: { program: string; args: string[] };
  /** Uninstall: run after the files are removed, and only if any were. */
  afterRemoval?: boolean;
}

export interface PlannedFile {
  path: string;
  text: string;
  bytes: Uint8Array;
  mode: number;
}

export interface Plan {
  scheduler: SchedulerFormat;
  /** Folders to create first (mode 0700), such as state.dir. */
  folders: string[];
  files: PlannedFile[];
  /** Files to delete (uninstall). */
  remove: string[];
  commands: PlannedCommand[];
  /** What the operator should know about the files (install only). */
  warnings?: string[];
  /** What it takes: root, or an elevated (Administrator) prompt. */
  needs: "root" | "administrator";
}

export interface InstallOptions {
  scheduler: SchedulerFormat;
  target: ScheduleTarget;
  /** Where `/` is: "/" on a real machine, a temp folder in tests. */
  root: string;
}

/** A path on the machine, under the injected root. */
export function underRoot(root: string, path: string): string {
  if (root === "/" || root === "") return path;
  return join(root, path.replace(/^[A-Za-z]:/, ""));
}

/** What `install` does, without doing it. */
export function installPlan(options: InstallOptions): Plan {
  const { scheduler, target, root } = options;
  const state = underRoot(root, target.config.state.dir);
  switch (scheduler) {
    case "systemd": {
      const dir = underRoot(root, "/etc/systemd/system");
      const written = schedulerFiles("systemd", target);
      const files = written.map((f) => ({
        path: join(dir, f.name),
        text: f.text,
        bytes: f.bytes,
        mode: 0o644,
      }));
      return {
        scheduler,
        warnings: written.flatMap((f) => f.warnings ?? []),
        // ReadWritePaths= refuses to start the service if a folder is missing.
        folders: [state],
        files,
        remove: [],
        commands: [
          { program: "systemctl", args: ["daemon-reload"] },
          { program: "systemctl", args: ["enable", "--now", TIMER_NAME] },
        ],
        needs: "root",
      };
    }
    case "cron": {
      const [f] = schedulerFiles("cron", { ...target, cronUser: "root" });
      return {
        scheduler,
        folders: [state],
        files: [{
          path: underRoot(root, `/etc/cron.d/${CRON_D_NAME}`),
          text: f.text,
          bytes: f.bytes,
          mode: 0o644,
        }],
        remove: [],
        commands: [],
        needs: "root",
      };
    }
    case "windows": {
      const [f] = schedulerFiles("windows", target);
      const path = underRoot(root, join(dirname(target.configFile), TASK_FILE));
      return {
        scheduler,
        folders: [state],
        files: [{ path, text: f.text, bytes: f.bytes, mode: 0o644 }],
        remove: [],
        commands: [{
          program: "schtasks",
          args: ["/Create", "/XML", path, "/TN", TASK_NAME, "/F"],
        }],
        needs: "administrator",
      };
    }
    case "launchd": {
      const [f] = schedulerFiles("launchd", target);
      const path = underRoot(root, `/Library/LaunchDaemons/${PLIST_FILE}`);
      return {
        scheduler,
        folders: [state],
        files: [{ path, text: f.text, bytes: f.bytes, mode: 0o644 }],
        remove: [],
        commands: [
          // A loaded job keeps its old definition until it is booted out.
          {
            program: "launchctl",
            args: ["bootout", `system/${LAUNCHD_LABEL}`],
            onlyIf: {
              program: "launchctl",
              args: ["print", `system/${LAUNCHD_LABEL}`],
            },
          },
          { program: "launchctl", args: ["bootstrap", "system", path] },
        ],
        needs: "root",
      };
    }
  }
}

/** What `uninstall` does, without doing it. */
export function uninstallPlan(
  scheduler: SchedulerFormat,
  root: string,
  configFile: string,
): Plan {
  const base = { scheduler, folders: [], files: [] };
  switch (scheduler) {
    case "systemd": {
      const dir = underRoot(root, "/etc/systemd/system");
      const timer = join(dir, TIMER_NAME);
      return {
        ...base,
        remove: [timer, join(dir, SERVICE_NAME)],
        commands: [
          {
            program: "systemctl",
            args: ["disable", "--now", TIMER_NAME],
            onlyIf: { program: "test", args: ["-e", timer] },
          },
          {
            program: "systemctl",
            args: ["clean", "--what=state", TIMER_NAME],
            optional: true,
            onlyIf: { program: "test", args: ["-e", timer] },
          },
          { program: "systemctl", args: ["daemon-reload"], afterRemoval: true },
        ],
        needs: "root",
      };
    }
    case "cron":
      return {
        ...base,
        remove: [underRoot(root, `/etc/cron.d/${CRON_D_NAME}`)],
        commands: [],
        needs: "root",
      };
    case "windows":
      return {
        ...base,
        remove: [underRoot(root, join(dirname(configFile), TASK_FILE))],
        commands: [{
          program: "schtasks",
          args: ["/Delete", "/TN", TASK_NAME, "/F"],
          onlyIf: { program: "schtasks", args: ["/Query", "/TN", TASK_NAME] },
        }],
        needs: "administrator",
      };
    case "launchd":
      return {
        ...base,
        remove: [underRoot(root, `/Library/LaunchDaemons/${PLIST_FILE}`)],
        commands: [{
          program: "launchctl",
          args: ["bootout", `system/${LAUNCHD_LABEL}`],
          onlyIf: {
            program: "launchctl",
            args: ["print", `system/${LAUNCHD_LABEL}`],
          },
        }],
        needs: "root",
      };
  }
}

export interface DetectedScheduler {
  scheduler: SchedulerFormat;
  /** Why this one, for the operator. */
  reason: string;
  /** Something that will keep the entry from running. */
  warning?: string;
}

/**
 * The schedulers that have an entry of image-agent on this machine, found
 * by the files `install` writes (the Windows task by its XML beside the
 * config).
 *
 * TODO: an exported line merged into a user crontab by hand is not seen, nor
 * a Windows task whose XML was deleted; look for the marker in `crontab -l`
 * and ask `schtasks /Query` once `status` is allowed to run commands.
 */
export function installedEntries(
  root: string,
  configFile: string,
): SchedulerFormat[] {
  const formats: SchedulerFormat[] = ["systemd", "cron", "windows", "launchd"];
  return formats.filter((f) =>
    uninstallPlan(f, root, configFile).remove.some(exists)
  );
}

/** The scheduler of this machine: systemd when it runs, else cron. */
export function detectScheduler(os: string, root: string): DetectedScheduler {
  if (os === "windows") {
    return {
      scheduler: "windows",
      reason: "this is Windows: using Task Scheduler",
    };
  }
  if (os === "darwin") {
    return { scheduler: "launchd", reason: "this is macOS: using launchd" };
  }
  try {
    if (Deno.statSync(underRoot(root, "/run/systemd/system")).isDirectory) {
      return {
        scheduler: "systemd",
        reason:
          "systemd is running (/run/systemd/system exists): using the systemd timer",
      };
    }
  } catch { /* not running systemd */ }
  const running = cronRunning(root);
  return {
    scheduler: "cron",
    reason:
      `systemd is not running (/run/systemd/system missing): using /etc/cron.d/${CRON_D_NAME}`,
    warning: running === false
      ? "no cron daemon is running (no cron or crond process found): the entry does nothing until cron is started (such as 'service cron start')"
      : undefined,
  };
}

/** Is a cron or crond process running? Null when /proc cannot tell. */
function cronRunning(root: string): boolean | null {
  const proc = underRoot(root, "/proc");
  try {
    for (const entry of Deno.readDirSync(proc)) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const comm = Deno.readTextFileSync(join(proc, entry.name, "comm"))
          .trim();
        if (comm === "cron" || comm === "crond") return true;
      } catch { /* the process ended meanwhile */ }
    }
    return false;
  } catch {
    return null;
  }
}

export interface ApplyOptions {
  run: CommandRunner;
  /** Null when the platform has no such notion (Windows). */
  isRoot: boolean | null;
  dryRun: boolean;
  /** One line for the operator per step. */
  report: (line: string) => void;
  /** "install" or "uninstall", for messages. */
  action: string;
  /**
   * The command line to run again with more rights, such as
   * `image-agent install --config /etc/image-agent/config.json`.
   */
  rerun: string;
}

interface RunOptions extends ApplyOptions {
  scheduler: SchedulerFormat;
}

/** Carries out a plan, or with dryRun only reports it. */
export async function applyPlan(
  plan: Plan,
  options: ApplyOptions,
): Promise<void> {
  const { report } = options;
  if (plan.needs === "root" && options.isRoot === false && !options.dryRun) {
    // Nothing installed is not an error, with root or without.
    if (plan.remove.length > 0 && !await anythingToRemove(plan, options.run)) {
      report(
        `nothing to remove: no ${plan.scheduler} entry of image-agent found`,
      );
      return;
    }
    throw new AgentError(
      `'${options.action}' needs root to ${
        options.action === "install" ? "register" : "remove"
      } the ${plan.scheduler} entry`,
      EXIT_USAGE,
      { hint: `run it again as root: sudo ${options.rerun}` },
    );
  }
  const would = options.dryRun ? "would " : "";
  if (options.dryRun && plan.needs === "root" && options.isRoot === false) {
    report(`note: this needs root; run it with sudo: sudo ${options.rerun}`);
  }
  if (options.dryRun && plan.needs === "administrator") {
    report(
      "note: this needs an elevated (Administrator) prompt; schtasks answers 'Access is denied' otherwise",
    );
  }
  for (const folder of plan.folders) {
    if (exists(folder)) continue;
    report(`${would}create folder ${folder} (mode 0700)`);
    if (!options.dryRun) {
      await Deno.mkdir(folder, { recursive: true, mode: 0o700 });
    }
  }
  for (const file of plan.files) {
    const same = sameBytes(file.path, file.bytes);
    if (same) {
      report(`unchanged ${file.path}`);
      continue;
    }
    report(
      `${would}write ${file.path} (mode ${
        file.mode.toString(8).padStart(4, "0")
      }):`,
    );
    report(indent(file.text));
    if (!options.dryRun) {
      await Deno.mkdir(dirname(file.path), { recursive: true });
      await Deno.writeFile(file.path, file.bytes, { mode: file.mode });
      await Deno.chmod(file.path, file.mode).catch(() => {});
    }
  }
  // Uninstall: deregister first, then remove the files, then reload.
  const runOptions = { ...options, scheduler: plan.scheduler };
  let changed = await runCommands(
    plan.commands.filter((c) => !c.afterRemoval),
    runOptions,
  );
  let removed = 0;
  for (const path of plan.remove) {
    if (!exists(path)) continue;
    report(`${would}remove ${path}`);
    removed++;
    if (!options.dryRun) await Deno.remove(path);
  }
  if (removed > 0) {
    changed += await runCommands(
      plan.commands.filter((c) => c.afterRemoval),
      runOptions,
    );
  }
  if (plan.remove.length > 0 && changed + removed === 0) {
    report(
      `nothing to remove: no ${plan.scheduler} entry of image-agent found`,
    );
  }
}

/** Does an uninstall plan find a file or a registered entry to remove? */
async function anythingToRemove(
  plan: Plan,
  run: CommandRunner,
): Promise<boolean> {
  if (plan.remove.some(exists)) return true;
  for (const c of plan.commands) {
    if (!c.onlyIf) continue;
    const present = c.onlyIf.program === "test"
      ? exists(c.onlyIf.args[1])
      : (await run(c.onlyIf.program, c.onlyIf.args)).code === 0;
    if (present) return true;
  }
  return false;
}

/** Runs (or reports) the commands; returns how many were due. */
async function runCommands(
  commands: PlannedCommand[],
  options: RunOptions,
): Promise<number> {
  const { report, run } = options;
  let due = 0;
  for (const c of commands) {
    if (c.onlyIf) {
      // The probe only reads, so it runs under --dry-run too, except `test`,
      // which is answered here so the plan stays portable.
      const present = c.onlyIf.program === "test"
        ? exists(c.onlyIf.args[1])
        : (await run(c.onlyIf.program, c.onlyIf.args)).code === 0;
      if (!present) continue;
    }
    due++;
    const line = [c.program, ...c.args].map(displayQuote).join(" ");
    if (options.dryRun) {
      report(`would run: ${line}`);
      continue;
    }
    report(`run: ${line}`);
    const r = await run(c.program, c.args);
    if (r.code === 0) continue;
    const detail = (r.stderr || r.stdout).trim();
    if (c.optional) {
      report(`warning: '${line}' failed (${detail}); continuing`);
      continue;
    }
    const denied =
      /access is denied|permission denied|not permitted|authentication/i
        .test(detail);
    throw new AgentError(
      `Cannot ${options.action} the scheduler entry: '${line}' failed with exit code ${r.code}${
        detail ? `: ${detail}` : ""
      }`,
      EXIT_FAILED,
      {
        hint: denied
          ? (options.scheduler === "windows"
            ? "run it from an elevated (Administrator) prompt"
            : `run it again as root: sudo ${options.rerun}`)
          : undefined,
      },
    );
  }
  return due;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function sameBytes(path: string, bytes: Uint8Array): boolean {
  try {
    const old = Deno.readFileSync(path);
    return old.length === bytes.length && old.every((b, i) => b === bytes[i]);
  } catch {
    return false;
  }
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((l) => `    ${l}`).join("\n");
}

function displayQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./\\-]+$/.test(word)
    ? word
    : `"${word.replaceAll('"', '\\"')}"`;
}
