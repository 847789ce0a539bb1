/**
 * `image-agent schedule export`, `install`, `uninstall` and `daemon`:
 * argument parsing and printing only; the work is in src/schedule/.
 */

import { basename, join, resolve } from "node:path";
import {
  type Command,
  COMMON_HELP,
  type Deps,
  EXIT_CODES_HELP,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { readConfig } from "./context.ts";
import { type Config, isValidTimeZone, localTimeZone } from "../config.ts";
import { ConfigError, UsageError } from "../errors.ts";
import {
  formatLocal,
  nextFire,
  nextRunTime,
  parseCron,
} from "../schedule/cron.ts";
import {
  FORMATS,
  isFormat,
  schedulerFiles,
  type SchedulerFormat,
  type ScheduleTarget,
} from "../schedule/files.ts";
import { crontabMergeCommand, shellQuote } from "../schedule/crontab.ts";
import {
  applyPlan,
  type CommandRunner,
  denoCommandRunner,
  detectScheduler,
  installPlan,
  uninstallPlan,
} from "../schedule/install.ts";

/** What install and uninstall touch on the machine; tests replace it. */
export interface SystemAccess {
  /** Where `/` is ("/" on a real machine). */
  root: string;
  run: CommandRunner;
  /** Null where the platform has no such notion (Windows). */
  isRoot: () => boolean | null;
  os: string;
  /** The machine's local IANA zone. */
  machineZone: () => string;
}

export const realSystem: SystemAccess = {
  root: "/",
  run: denoCommandRunner,
  isRoot: () => Deno.build.os === "windows" ? null : Deno.uid() === 0,
  os: Deno.build.os,
  machineZone: localTimeZone,
};

/** Where install.sh and install.ps1 put the binary and the config. */
const DEFAULT_PATHS = {
  windows: {
    binary: "C:\\Program Files\\image-agent\\image-agent.exe",
    config: "C:\\ProgramData\\image-agent\\config.json",
  },
  posix: {
    binary: "/usr/local/bin/image-agent",
    config: "/etc/image-agent/config.json",
  },
};

type PathFamily = keyof typeof DEFAULT_PATHS;

/** The kind of paths the machine that runs a format's files uses. */
function familyOf(format: SchedulerFormat): PathFamily {
  return format === "windows" ? "windows" : "posix";
}

function isAbsoluteIn(family: PathFamily, path: string): boolean {
  return family === "windows"
    ? /^[A-Za-z]:\\/.test(path) || /^\\\\[^\\]/.test(path)
    : path.startsWith("/");
}

/** A --binary or --config-path value, checked for the target machine. */
function targetPath(flag: string, value: string, format: SchedulerFormat) {
  const family = familyOf(format);
  if (!isAbsoluteIn(family, value)) {
    throw new UsageError(
      `--${flag} must be an absolute ${
        family === "windows" ? "Windows" : "POSIX"
      } path for the ${format} files, not "${value}"`,
      {
        hint: family === "windows"
          ? `such as "${
            DEFAULT_PATHS.windows[flag === "binary" ? "binary" : "config"]
          }"`
          : `such as "${
            DEFAULT_PATHS.posix[flag === "binary" ? "binary" : "config"]
          }"`,
      },
    );
  }
  return value;
}

/** Is this path the Deno runtime rather than the compiled image-agent? */
function isDenoRuntime(path: string): boolean {
  return /^deno(\.exe)?$/i.test(basename(path));
}

function parseFormat(name: string | undefined, flag: string): SchedulerFormat {
  if (name === undefined || !isFormat(name)) {
    throw new UsageError(
      name === undefined
        ? `Missing ${flag}`
        : `Unknown ${flag} "${name}" (expected ${FORMATS.join(", ")})`,
      { hint: `choose one of ${FORMATS.join(", ")}` },
    );
  }
  return name;
}

/**
 * The binary the entries will start: --binary, else this program, else (for
 * another kind of machine, or under the Deno runtime) where the installers
 * put it there.
 */
function binaryFor(
  deps: Deps,
  flag: string | undefined,
  format: SchedulerFormat,
  options: { forInstall: boolean; os: string },
): string {
  if (flag) return targetPath("binary", flag, format);
  const family = familyOf(format);
  const sameKind = (options.os === "windows" ? "windows" : "posix") === family;
  // install registers this program on this machine, whatever it asks for.
  if (!isDenoRuntime(deps.execPath) && (sameKind || options.forInstall)) {
    return deps.execPath;
  }
  if (options.forInstall) {
    throw new UsageError(
      `This is running under the Deno runtime (${deps.execPath}), not the compiled image-agent binary`,
      {
        hint:
          "install the compiled binary and run 'image-agent install' from it, or pass --binary PATH",
      },
    );
  }
  const binary = DEFAULT_PATHS[family].binary;
  deps.log.warn(
    `${
      sameKind
        ? "Running under the Deno runtime"
        : `The ${format} files are for another kind of machine`
    }: they start ${binary} (set --binary to change it)`,
  );
  return binary;
}

/**
 * The config the entries will read: --config-path, else this machine's
 * config file, else (for another kind of machine) the installers' default.
 */
function configPathFor(
  deps: Deps,
  flag: string | undefined,
  format: SchedulerFormat,
  options: { os: string; configFile: string },
): string {
  if (flag) return targetPath("config-path", flag, format);
  const family = familyOf(format);
  if ((options.os === "windows" ? "windows" : "posix") === family) {
    return options.configFile;
  }
  const config = DEFAULT_PATHS[family].config;
  deps.log.warn(
    `The ${format} files are for another kind of machine: they read the config ${config} (set --config-path to change it)`,
  );
  return config;
}

/** Reads the config and turns a bad schedule.cron into a config error. */
export function readScheduleConfig(
  deps: Deps,
  flag: string | undefined,
  checkPaths: boolean,
): Config {
  const config = readConfig(deps, flag, checkPaths);
  try {
    nextFire(
      parseCron(config.schedule.cron),
      deps.clock.now(),
      config.schedule.timezone,
    );
  } catch (err) {
    throw new ConfigError(
      `Config key "schedule.cron": ${
        err instanceof Error ? err.message : String(err)
      }`,
      "schedule.cron",
      { hint: 'five fields, such as "0 2 * * *" for 02:00 every night' },
    );
  }
  return config;
}

function scheduleTarget(
  config: Config,
  binary: string,
  machineZone: string,
  now: Date,
  configFile = config.file,
): ScheduleTarget {
  return { binary, configFile, config, machineZone, now };
}

// --- schedule export ---------------------------------------------------------

const SCHEDULE_HELP =
  `Usage: image-agent schedule export --format FORMAT --out DIR [OPTIONS]

Write the OS scheduler files for schedule.cron in schedule.timezone into
DIR, without registering anything. 'image-agent install' writes the same
files into place and registers them.

Formats:
  systemd   image-agent.service (oneshot, hardened, may write only the
            image, state, backup and shop database folders) and
            image-agent.timer (OnCalendar= in the configured zone,
            Persistent=true, RandomizedDelaySec= from the config)
  cron      image-agent.cron: one line after a comment, for a user
            crontab (it prints the command that merges it in). Debian
            cron has no per-job zone: the hours are converted into this
            machine's zone, or the schedule is refused
  windows   image-agent.xml: Task Scheduler XML (UTF-16 LE with BOM) for
            'schtasks /Create /XML image-agent.xml /TN \\image-agent\\nightly'
  launchd   com.image-agent.nightly.plist for /Library/LaunchDaemons

Windows and launchd run in the machine's own zone and have no ranges or
weekday-AND-date rules; what they cannot express is refused, not
approximated.

Files for another kind of machine (windows files written on Linux or
macOS, or the reverse) start C:\\Program Files\\image-agent\\image-agent.exe
with C:\\ProgramData\\image-agent\\config.json, or /usr/local/bin/image-agent
with /etc/image-agent/config.json, unless --binary and --config-path say
otherwise.

Options:
      --format FORMAT     systemd, cron, windows or launchd
      --out DIR           folder to write into (created if missing)
      --binary PATH       absolute path of image-agent on the target machine
                          (default: this program)
      --config-path PATH  absolute path of the config on the target machine
                          (default: the config read here)
      --machine-zone ZONE the target machine's zone, for cron, windows and
                          launchd (default: this machine's zone)
${COMMON_HELP}

${EXIT_CODES_HELP}
`;

/** `schedule export`, against the given system (tests pick the OS). */
export function makeScheduleCommand(system: SystemAccess): Command {
  return {
    name: "schedule",
    summary: "write OS scheduler files: schedule export --format F --out DIR",
    help: SCHEDULE_HELP,
    async run(deps, argv) {
      const { values, positionals } = parseCommandArgs("schedule", argv, {
        format: { type: "string" },
        out: { type: "string" },
        binary: { type: "string" },
        "config-path": { type: "string" },
        "machine-zone": { type: "string" },
      }, true);
      if (positionals[0] !== "export" || positionals.length !== 1) {
        throw new UsageError(
          positionals.length === 0
            ? "Missing the subcommand: 'schedule export'"
            : `Unknown subcommand "schedule ${positionals.join(" ")}"`,
          { hint: "see 'image-agent schedule --help'" },
        );
      }
      const format = parseFormat(values.format, "--format");
      if (!values.out) throw new UsageError("Missing --out DIR");
      const config = readScheduleConfig(deps, values.config, false);
      const machineZone = values["machine-zone"] ?? system.machineZone();
      if (!isValidTimeZone(machineZone)) {
        throw new UsageError(
          `Unknown --machine-zone "${machineZone}": not an IANA time zone`,
          {
            hint:
              'give a zone such as "Asia/Shanghai", "Europe/Berlin" or "UTC"',
          },
        );
      }
      const binary = binaryFor(deps, values.binary, format, {
        forInstall: false,
        os: system.os,
      });
      const configFile = configPathFor(deps, values["config-path"], format, {
        os: system.os,
        configFile: config.file,
      });
      const target = scheduleTarget(
        config,
        binary,
        machineZone,
        deps.clock.now(),
        configFile,
      );
      const files = schedulerFiles(format, target);
      for (const f of files) for (const w of f.warnings ?? []) deps.log.warn(w);
      const out = resolve(values.out);
      await Deno.mkdir(out, { recursive: true });
      const written: string[] = [];
      for (const f of files) {
        const path = join(out, f.name);
        await Deno.writeFile(path, f.bytes, { mode: 0o644 });
        written.push(path);
      }
      const next = nextRunTime(config, deps.clock.now());
      if (values.json) {
        printJson(deps, {
          format,
          files: written,
          nextRun: next?.toISOString() ?? null,
        });
      } else {
        // `crontab FILE` would replace the user's whole crontab.
        const merge = format === "cron"
          ? `add it to this user's crontab, keeping the other lines:\n  ${
            crontabMergeCommand(written[0])
          }\nor let 'image-agent install --scheduler cron' write /etc/cron.d/image-agent\n`
          : "";
        deps.stdout(
          written.map((p) => `wrote ${p}\n`).join("") + merge +
            (next
              ? `next run: ${formatLocal(next, config.schedule.timezone)}\n`
              : ""),
        );
      }
      return 0;
    },
  };
}

export const scheduleCommand = makeScheduleCommand(realSystem);

// --- install / uninstall -----------------------------------------------------

const INSTALL_HELP =
  `Usage: image-agent install [--scheduler S] [--dry-run] [OPTIONS]

Register the scheduled run (schedule.cron in schedule.timezone) with this
machine's scheduler, and create state.dir. Runs started this way are
recorded with trigger "timer".

The scheduler is picked from the machine: systemd when it is running (a
timer in /etc/systemd/system, then 'systemctl enable --now'), else cron
(/etc/cron.d/image-agent); Task Scheduler on Windows ('schtasks /Create
/XML', from an elevated prompt); launchd on macOS
(/Library/LaunchDaemons, 'launchctl bootstrap system').
Needs root (Administrator on Windows). Running it again replaces the entry.

Options:
      --scheduler S   systemd, cron, windows or launchd (default: detected)
  -n, --dry-run       print the files and commands; change nothing
      --binary PATH   absolute path of image-agent (default: this program)
${COMMON_HELP}

${EXIT_CODES_HELP}
`;

const UNINSTALL_HELP =
  `Usage: image-agent uninstall [--scheduler S] [--dry-run] [OPTIONS]

Stop and remove what 'image-agent install' registered. Nothing installed
is not an error. The config, the state folder and the ledger are kept.

Options:
      --scheduler S   systemd, cron, windows or launchd (default: detected)
  -n, --dry-run       print what would be removed; change nothing
${COMMON_HELP}

${EXIT_CODES_HELP}
`;

/**
 * The command to suggest when more rights are needed: the same arguments,
 * with the config named by its absolute path, since `sudo` drops
 * IMAGE_AGENT_CONFIG and runs from another home, so the default lookup may
 * find another config.
 */
export function rerunLine(
  action: string,
  argv: string[],
  configFile: string | undefined,
): string {
  const kept: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (configFile && (a === "--config" || a === "-c")) {
      i++;
      continue;
    }
    if (configFile && a.startsWith("--config=")) continue;
    if (a === "--dry-run" || a === "-n") continue;
    kept.push(a);
  }
  if (configFile) kept.push("--config", configFile);
  return ["image-agent", action, ...kept].map(shellQuote).join(" ");
}

/** `install`, against the given system (tests pass a temp root). */
export function makeInstallCommand(system: SystemAccess): Command {
  return {
    name: "install",
    summary:
      "register the scheduled run with systemd, cron, Task Scheduler or launchd",
    help: INSTALL_HELP,
    async run(deps, argv) {
      const { values } = parseCommandArgs("install", argv, {
        scheduler: { type: "string" },
        "dry-run": { type: "boolean", short: "n" },
        binary: { type: "string" },
      });
      const detected = values.scheduler === undefined
        ? detectScheduler(system.os, system.root)
        : undefined;
      const scheduler = detected?.scheduler ??
        parseFormat(values.scheduler, "--scheduler");
      const config = readScheduleConfig(deps, values.config, true);
      const binary = binaryFor(deps, values.binary, scheduler, {
        forInstall: true,
        os: system.os,
      });
      const plan = installPlan({
        scheduler,
        root: system.root,
        target: scheduleTarget(
          config,
          binary,
          system.machineZone(),
          deps.clock.now(),
        ),
      });
      const dryRun = values["dry-run"] ?? false;
      const lines: string[] = [];
      const report = (line: string) => {
        lines.push(line);
        if (!values.json) deps.stdout(line + "\n");
      };
      report(
        `${
          dryRun ? "Dry run: " : ""
        }installing the ${scheduler} entry for cron "${config.schedule.cron}" in ${config.schedule.timezone}`,
      );
      if (detected) report(detected.reason);
      for (const w of [detected?.warning, ...plan.warnings ?? []]) {
        if (!w) continue;
        deps.log.warn(w);
        lines.push(`warning: ${w}`);
      }
      await applyPlan(plan, {
        run: system.run,
        isRoot: system.isRoot(),
        dryRun,
        report,
        action: "install",
        rerun: rerunLine("install", argv, config.file),
      });
      const next = nextRunTime(config, deps.clock.now());
      if (next) {
        report(`next run: ${formatLocal(next, config.schedule.timezone)}`);
      }
      if (values.json) {
        printJson(deps, {
          scheduler,
          dryRun,
          files: plan.files.map((f) => f.path),
          steps: lines,
        });
      }
      return 0;
    },
  };
}

/** `uninstall`, against the given system. */
export function makeUninstallCommand(system: SystemAccess): Command {
  return {
    name: "uninstall",
    summary: "remove what 'install' registered",
    help: UNINSTALL_HELP,
    async run(deps, argv) {
      const { values } = parseCommandArgs("uninstall", argv, {
        scheduler: { type: "string" },
        "dry-run": { type: "boolean", short: "n" },
      });
      const detected = values.scheduler === undefined
        ? detectScheduler(system.os, system.root)
        : undefined;
      const scheduler = detected?.scheduler ??
        parseFormat(values.scheduler, "--scheduler");
      // Only the Windows task file sits beside the config; a missing or
      // broken config must not keep anyone from uninstalling.
      let configFile = "C:\\ProgramData\\image-agent\\config.json";
      let configKnown = false;
      try {
        configFile = readConfig(deps, values.config, false).file;
        configKnown = true;
      } catch (err) {
        if (scheduler === "windows") throw err;
      }
      const dryRun = values["dry-run"] ?? false;
      const lines: string[] = [];
      const report = (line: string) => {
        lines.push(line);
        if (!values.json) deps.stdout(line + "\n");
      };
      report(`${dryRun ? "Dry run: " : ""}removing the ${scheduler} entry`);
      if (detected) report(detected.reason);
      await applyPlan(uninstallPlan(scheduler, system.root, configFile), {
        run: system.run,
        isRoot: system.isRoot(),
        dryRun,
        report,
        action: "uninstall",
        rerun: rerunLine(
          "uninstall",
          argv,
          configKnown ? configFile : undefined,
        ),
      });
      if (values.json) printJson(deps, { scheduler, dryRun, steps: lines });
      return 0;
    },
  };
}

export const installCommand = makeInstallCommand(realSystem);
export const uninstallCommand = makeUninstallCommand(realSystem);
