/**
 * Calls the real validators the scheduler tests rely on: systemd-analyze
 * (verify and calendar), xmllint with the Task Scheduler schema and the
 * plist DTD, python3's plistlib and Debian's `crontab -n`. The schema and
 * DTD are read from tests/testdata/.
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const TESTDATA = join(
  dirname(dirname(fileURLToPath(import.meta.url))),
  "testdata",
);

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function tool(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<ToolResult> {
  const out = await new Deno.Command(cmd, {
    args,
    env: { TZ: "UTC", LC_ALL: "C", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

let vendorRoot: Promise<string> | undefined;

/** A private root holding a copy of the vendor units, made once per run. */
function systemdRoot(): Promise<string> {
  vendorRoot ??= (async () => {
    const root = await Deno.makeTempDir({ prefix: "ia-systemd-root-" });
    await Deno.mkdir(join(root, "usr/lib/systemd"), { recursive: true });
    const cp = await tool("cp", [
      "-a",
      "/usr/lib/systemd/system",
      join(root, "usr/lib/systemd/"),
    ]);
    if (cp.code !== 0) {
      throw new Error(`cannot copy vendor units: ${cp.stderr}`);
    }
    return root;
  })();
  return vendorRoot;
}

/**
 * `systemd-analyze verify` on a service and timer pair, with the binary
 * stubbed inside a private root. Returns every line it printed: systemd
 * warns with exit code 0, so any output counts as a failure.
 */
export async function verifyUnits(
  units: Record<string, string>,
  binary: string,
): Promise<{ code: number; output: string }> {
  const base = await systemdRoot();
  const root = await Deno.makeTempDir({ prefix: "ia-verify-" });
  try {
    const cp = await tool("cp", ["-a", join(base, "usr"), root]);
    if (cp.code !== 0) throw new Error(cp.stderr);
    const unitDir = join(root, "etc/systemd/system");
    await Deno.mkdir(unitDir, { recursive: true });
    for (const [name, text] of Object.entries(units)) {
      await Deno.writeTextFile(join(unitDir, name), text);
    }
    const stub = join(root, binary);
    await Deno.mkdir(dirname(stub), { recursive: true });
    await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const r = await tool("systemd-analyze", [
      "verify",
      "--man=no",
      `--root=${root}`,
      ...Object.keys(units),
    ]);
    return { code: r.code, output: (r.stdout + r.stderr).trim() };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** The next `count` elapses of an OnCalendar value after `base`. */
export async function calendarElapses(
  expr: string,
  base: Date,
  count: number,
): Promise<Date[]> {
  const baseText = base.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  const r = await tool("systemd-analyze", [
    "calendar",
    `--iterations=${count}`,
    `--base-time=${baseText}`,
    expr,
  ]);
  if (r.code !== 0) {
    throw new Error(`systemd-analyze calendar '${expr}': ${r.stderr}`);
  }
  const out: Date[] = [];
  for (const line of r.stdout.split("\n")) {
    const m = line.match(
      /(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/,
    );
    if (m) out.push(new Date(m[1].replace(" ", "T") + "Z"));
  }
  return out;
}

/** `xmllint --schema windows-task.xsd`. */
export function xmllintTask(file: string): Promise<ToolResult> {
  return tool("xmllint", [
    "--noout",
    "--schema",
    join(TESTDATA, "windows-task.xsd"),
    file,
  ]);
}

/** `xmllint --dtdvalid` against Apple's DTD, through a local catalog. */
export async function xmllintPlist(file: string): Promise<ToolResult> {
  const dir = await Deno.makeTempDir({ prefix: "ia-catalog-" });
  try {
    const catalog = join(dir, "catalog.xml");
    await Deno.writeTextFile(
      catalog,
      `<?xml version="1.0"?>
<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
  <system systemId="http://www.apple.com/DTDs/PropertyList-1.0.dtd" uri="file://${
        join(TESTDATA, "plist-1.0.dtd")
      }"/>
  <public publicId="-//Apple//DTD PLIST 1.0//EN" uri="file://${
        join(TESTDATA, "plist-1.0.dtd")
      }"/>
</catalog>
`,
    );
    return await tool("xmllint", [
      "--noout",
      "--nonet",
      "--dtdvalid",
      join(TESTDATA, "plist-1.0.dtd"),
      file,
    ], { XML_CATALOG_FILES: catalog });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The plist as python3's plistlib reads it, turned into JSON. */
export async function plistlibLoad(file: string): Promise<unknown> {
  const r = await tool("python3", [
    "-c",
    "import json,plistlib,sys; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))",
    file,
  ]);
  if (r.code !== 0) throw new Error(`plistlib: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Debian cron's syntax check (`crontab -n`), or cronie's `crontab -T`. */
export async function crontabCheck(file: string): Promise<ToolResult> {
  const r = await tool("crontab", ["-n", file]);
  if (r.code !== 0 && /invalid option/.test(r.stderr)) {
    return tool("crontab", ["-T", file]);
  }
  return r;
}
