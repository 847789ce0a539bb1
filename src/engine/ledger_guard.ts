/**
 * The ledger is the only record of which order's image went where. If it
 * is lost (state.dir deleted, ledger.db removed, a new machine) while the
 * copies remain, a run that went on deleting would pile new deletions on
 * top of restores nobody can find any more. So the ledger's id is written
 * to a marker file, `.image-agent-ledger`, in the state folder and in the
 * backup folder; a run that finds a marker with another id, or copies in
 * the backup folder but an empty ledger with no marker, deletes nothing
 * and says how to recover.
 *
 * First use (no marker, no copies) and a ledger from before markers
 * existed (rows, no marker) simply get their markers written.
 */

import { join } from "node:path";
import { AgentError, errorMessage } from "../errors.ts";
import type { EngineDeps } from "./engine.ts";

export const LEDGER_MARKER = ".image-agent-ledger";

interface Marker {
  ledger: string;
  createdAt?: string;
}

export class LedgerMismatchError extends AgentError {
  constructor(message: string, hint: string) {
    super(message, undefined, { hint });
    this.name = "LedgerMismatchError";
  }
}

export interface GuardOptions {
  /** Write the markers (not in a dry run). */
  write: boolean;
  /** The operator checked the copies: take this ledger as the right one. */
  accept: boolean;
  /**
   * Throw on a mismatch (a pass that deletes); otherwise only warn and
   * leave the markers as they are (a backup-only pass).
   */
  enforce: boolean;
}

/**
 * Checks that the ledger is the one that recorded the copies; throws
 * `LedgerMismatchError` when it cannot be, unless `accept`. Returns the
 * problems found (empty when all is well), for a backup-only pass to warn.
 */
export async function checkLedgerIdentity(
  d: EngineDeps,
  options: GuardOptions,
): Promise<string[]> {
  const me = d.ledger.identity(options.write);
  const stateDir = d.config.state.dir;
  // TODO: the Baidu target keeps no marker yet (the Storage contract has no
  // way to store one); lift once it does, so a wiped state.dir is caught on
  // Baidu too. The state.dir marker still catches a lost ledger.db there.
  const backupDir = d.storage?.name === "local"
    ? d.config.backup.local.dir
    : undefined;
  const places = [
    { what: `the state folder ${stateDir}`, dir: stateDir },
    ...(backupDir
      ? [{ what: `the backup folder ${backupDir}`, dir: backupDir }]
      : []),
  ];

  const problems: string[] = [];
  for (const p of places) {
    const m = await readMarker(p.dir);
    if (m && m.ledger !== me.id) {
      problems.push(
        `${p.what} belongs to ledger ${m.ledger}${
          m.createdAt ? ` (created ${m.createdAt} UTC)` : ""
        }, but ${d.ledger.path} is ledger ${me.id} (created ${me.createdAt} UTC)`,
      );
    }
  }
  if (backupDir && me.backups === 0 && !(await readMarker(backupDir))) {
    const strays = await copiesIn(backupDir);
    if (strays > 0) {
      problems.push(
        `the backup folder ${backupDir} already holds ${strays} order folder(s), but the ledger ${d.ledger.path} is empty`,
      );
    }
  }

  if (problems.length > 0 && !options.accept && !options.enforce) {
    d.log.warn(
      `The ledger cannot account for the copies already made (${
        problems.join("; ")
      }); backing up only, as asked, and 'run' or 'cleanup' will refuse to delete until this is resolved`,
    );
    return problems;
  }
  if (problems.length > 0 && !options.accept) {
    throw new LedgerMismatchError(
      `Refusing to delete images: the ledger cannot account for the copies already made: ${
        problems.join("; ")
      }. Nothing was deleted`,
      `if ledger.db was lost, stop the agent and put ledger.db back into ${stateDir} from a backup; ` +
        `if this is a new installation sharing a backup folder, give it its own backup.local.dir; ` +
        `only once you have checked the copies, run again with --accept-new-ledger to make this ledger the one of record`,
    );
  }
  if (problems.length > 0) {
    d.log.warn(
      `Taking ledger ${me.id} as the ledger of record (--accept-new-ledger): ${
        problems.join("; ")
      }`,
    );
  }
  if (options.write) {
    for (const p of places) {
      const m = await readMarker(p.dir);
      if (m?.ledger === me.id) continue;
      await writeMarker(p.dir, { ledger: me.id, createdAt: me.createdAt })
        .catch((err) =>
          d.log.warn(
            `Cannot write the ledger marker in ${p.what}: ${errorMessage(err)}`,
          )
        );
    }
  }
  return problems;
}

async function readMarker(dir: string): Promise<Marker | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, LEDGER_MARKER));
  } catch {
    return undefined;
  }
  try {
    const m = JSON.parse(text);
    if (m && typeof m.ledger === "string") return m as Marker;
  } catch { /* unreadable: treated as another ledger's */ }
  return { ledger: "(unreadable marker)" };
}

async function writeMarker(dir: string, marker: Marker): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const file = join(dir, LEDGER_MARKER);
  // One fixed temp name: a run killed here leaves nothing the next one
  // does not overwrite and rename.
  const temp = `${file}.tmp`;
  await Deno.writeTextFile(temp, JSON.stringify(marker) + "\n");
  await Deno.rename(temp, file);
}

/** Entries of the backup folder that look like order folders. */
async function copiesIn(dir: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.startsWith(".")) n++;
    }
  } catch {
    return 0;
  }
  return n;
}
