/**
 * A fake Baidu Netdisk on loopback, as strict as the protocol reference
 * describes the real one, so a client that departs from it fails here.
 *
 * Each host of the real service is its own origin: OAuth
 * (`openapi.baidu.com`), the file API (`pan.baidu.com`), the PCS host
 * (`d.pcs.baidu.com`: locateupload, superfile2, dlinks), the upload host
 * locateupload names (a plain HTTP/1.1 server over TCP, so a part can be cut
 * mid-body) and a CDN the dlink redirects to. A call to the wrong host, with
 * the wrong HTTP verb or the wrong `method` is refused. Requests are checked
 * field by field: on POSTs only `method`, `opera` and `access_token` in the
 * query and the rest in a form body; precreate and create with `isdir`,
 * `rtype`, lowercase hex MD5s and a block count that fits the size and the
 * member's chunk size; create's block list equal to precreate's; superfile2
 * with `method=upload`, `type=tmpfile`, one multipart field `file` with an
 * ASCII file name and a real length; locateupload with its four parameters;
 * writes only under `/apps/<app>/`. Folders are real: made by create with
 * `isdir=1`, shown in listings, and precreate, create or a folder create
 * under a missing parent fails (errno -9 by default, or 31063), the
 * strictest reading of a point the protocol leaves open. The query is read with plain
 * percent-decoding, so a `+` is a plus, not a space. OAuth has code, device and refresh grants,
 * with a refresh that kills the old pair, and access tokens that run out
 * after `tokenLifetimeSec` on the fake's clock; a device code answers
 * slow_down when polled faster than its interval (which then grows by 5 s),
 * and stops working once it expired or was used. Errors come in the real shapes.
 *
 * Faults are queued by call name ("token", "device", "uinfo", "quota",
 * "precreate", "locateupload", "upload", "create", "mkdir" (create with
 * isdir=1), "list", "filemetas",
 * "delete", "dlink", "cdn"): an error answer on the next N calls, a
 * connection dropped mid-answer or (upload host) mid-request while the
 * client is still sending, an answer that never comes, a slow answer,
 * corrupted bytes.
 */

import { createHash } from "node:crypto";

const MIB = 1 << 20;
export const APPID = "250528";

export interface FakeBaiduOptions {
  appKey?: string;
  secretKey?: string;
  /** The app's own folder: writes go under `/apps/<appName>/` only. */
  appName?: string;
  vipType?: number;
  quotaTotal?: number;
  /** What counts as "4 MiB" in the chunk rules; small in tests. */
  chunkUnit?: number;
  /** Keep only sizes and MD5s, not bytes (benchmarks). */
  discardBytes?: boolean;
  /** Codes `baidu login --code` may use. */
  codes?: string[];
  /**
   * The fake's clock in ms (token and device-code lifetimes); the tests'
   * manual clock, or real time by default.
   */
  now?: () => number;
  /** `expires_in` of every access token issued (default 30 days). */
  tokenLifetimeSec?: number;
  /** How long a device code works, in seconds (default 1800). */
  deviceExpiresIn?: number;
  /**
   * precreate of a path whose earlier session is still open, with the same
   * block list, continues that session and lists only the missing parts
   * (Baidu is said to do this for a resent uploadid; unconfirmed without).
   */
  resumeByPath?: boolean;
  /** Whether `/apps/<appName>` exists at the start (default true). */
  appFolder?: boolean;
  /**
   * What precreate, create and a folder create answer when the parent
   * folder is missing: errno -9 (default) or 31063. Baidu does not say
   * whether it makes missing parents; the fake takes the strict reading.
   */
  parentMissingErrno?: number;
}

interface StoredFile {
  fsId: bigint;
  path: string;
  size: number;
  md5: string;
  blockList: string[];
  bytes?: Uint8Array;
  mtime: number;
}

interface StoredFolder {
  fsId: bigint;
  path: string;
  mtime: number;
}

interface Session {
  path: string;
  size: number;
  blockList: string[];
  rtype: string;
  parts: Map<number, { md5: string; bytes?: Uint8Array; length: number }>;
  expired: boolean;
}

export interface Fault {
  /** xpan errno (HTTP 200). */
  errno?: number;
  /** PCS error_code with `status`. */
  errorCode?: number;
  status?: number;
  msg?: string;
  /** OAuth error string (HTTP 400). */
  oauthError?: string;
  /** Cut the connection after this many body bytes. */
  dropAfter?: number;
  /** Wait before answering, in ms (real time; keep small). */
  delayMs?: number;
  /** Flip a byte of the answer body (downloads). */
  corrupt?: boolean;
  /** Answer a wrong MD5 for an uploaded part. */
  wrongMd5?: boolean;
  /** Send `Retry-After: <seconds>` with the error answer. */
  retryAfter?: number;
  /** The access token dies just before this call (a refresh still works). */
  expireToken?: boolean;
  /** The access and refresh tokens both die: only a new login helps. */
  revoke?: boolean;
  /** Another client fills the drive first: this many bytes stay free. */
  fillQuota?: number;
  /**
   * upload: close the connection once this many body bytes were read, while
   * the client is still sending.
   */
  cutAfter?: number;
  /**
   * Never answer (upload: after reading the whole body); the client's own
   * timeout has to end the call.
   */
  stall?: boolean;
  /** cdn: send this many bytes of the file, then nothing more. */
  stallAfter?: number;
  /** cdn: answer a `Range` request with 200 and the whole file. */
  ignoreRange?: boolean;
  /** Do what was asked, then cut the connection: the answer is lost. */
  lost?: boolean;
  /** HTTP 200 with a body that is not JSON, and nothing done. */
  garbage?: boolean;
  /**
   * delete: answer errno 0 with no `info`, having deleted the paths
   * ("deleted") or not ("kept").
   */
  noInfo?: "deleted" | "kept";
  /** create: answer success but never store the file. */
  ghost?: boolean;
  /** create: store the file but answer this size. */
  lieSize?: number;
  /** precreate: list these part indexes as needed, whatever is held. */
  needed?: number[];
  /** create: store the file but leave `size` out of the answer. */
  noSize?: boolean;
}

type HostName = "oauth" | "api" | "pcs" | "upload" | "cdn";

interface Route {
  hosts: HostName[];
  verb: "GET" | "POST";
  path: string | RegExp;
  /** The `method` query parameter the call must carry. */
  method?: string;
  /** The call's name, for faults and counts. */
  name: string;
}

/** Every call the protocol reference names, and where it is served. */
const ROUTES: Route[] = [
  { hosts: ["oauth"], verb: "GET", path: "/oauth/2.0/token", name: "token" },
  {
    hosts: ["oauth"],
    verb: "GET",
    path: "/oauth/2.0/device/code",
    name: "device",
  },
  {
    hosts: ["api"],
    verb: "GET",
    path: "/rest/2.0/xpan/nas",
    method: "uinfo",
    name: "uinfo",
  },
  { hosts: ["api"], verb: "GET", path: "/api/quota", name: "quota" },
  {
    hosts: ["api"],
    verb: "POST",
    path: "/rest/2.0/xpan/file",
    method: "precreate",
    name: "precreate",
  },
  {
    hosts: ["api"],
    verb: "POST",
    path: "/rest/2.0/xpan/file",
    method: "create",
    name: "create",
  },
  {
    hosts: ["api"],
    verb: "GET",
    path: "/rest/2.0/xpan/file",
    method: "list",
    name: "list",
  },
  {
    hosts: ["api"],
    verb: "POST",
    path: "/rest/2.0/xpan/file",
    method: "filemanager",
    name: "delete",
  },
  {
    hosts: ["api"],
    verb: "GET",
    path: "/rest/2.0/xpan/multimedia",
    method: "filemetas",
    name: "filemetas",
  },
  {
    hosts: ["pcs"],
    verb: "GET",
    path: "/rest/2.0/pcs/file",
    method: "locateupload",
    name: "locateupload",
  },
  {
    hosts: ["pcs", "upload"],
    verb: "POST",
    path: "/rest/2.0/pcs/superfile2",
    method: "upload",
    name: "upload",
  },
  { hosts: ["pcs"], verb: "GET", path: /^\/file\/\d+$/, name: "dlink" },
  { hosts: ["cdn"], verb: "GET", path: /^\/cdn\/\d+$/, name: "cdn" },
];

/** Query parameters a POST may carry; everything else goes in the body. */
const POST_QUERY = new Set(["method", "opera", "access_token"]);
const MD5_HEX = /^[0-9a-f]{32}$/;

export class FakeBaidu {
  readonly appKey: string;
  readonly secretKey: string;
  readonly appName: string;
  vipType: number;
  quotaTotal: number;
  readonly chunkUnit: number;
  readonly files = new Map<string, StoredFile>();
  /** Folders that exist, by path. */
  readonly dirs = new Map<string, StoredFolder>();
  readonly parentMissingErrno: number;
  readonly tokenLifetimeSec: number;
  readonly now: () => number;
  /** When the current access token stops working (fake clock, ms). */
  accessExpiresAt = 0;
  readonly sessions = new Map<string, Session>();
  /** Calls per name, for assertions. */
  readonly calls = new Map<string, number>();
  /** Parts received per upload host origin. */
  readonly uploadsByHost = new Map<string, number>();
  /** Every User-Agent seen on dlink calls. */
  readonly userAgents: string[] = [];
  /** Every request line seen, to prove tokens travel where expected. */
  readonly log: string[] = [];
  /** Requests refused as malformed or misdirected, with the reason. */
  readonly refused: string[] = [];
  /** Every access and refresh token ever issued (none may leak). */
  readonly issued: string[] = [];
  /** Part numbers received intact, per upload id, in arrival order. */
  readonly partsByUpload = new Map<string, number[]>();
  /** Upload ids handed out by precreate, in order. */
  readonly uploadIds: string[] = [];
  /** `Range` headers seen on CDN downloads. */
  readonly ranges: string[] = [];
  /** Times (ms, real time) of every call per name, to check backoff. */
  readonly times = new Map<string, number[]>();
  /** Names the server refuses (errno -7) though the client allows them. */
  rejectName?: (name: string) => boolean;
  readonly codes: Set<string>;
  accessToken = "";
  refreshToken = "";
  /** The scope token answers carry; null leaves the field out. */
  tokenScope: string | null = "basic netdisk";
  /** Device flow: answers before approval ("authorization_pending" etc.). */
  deviceQueue: string[] = [];
  readonly deviceExpiresIn: number;
  readonly resumeByPath: boolean;
  /** The device code handed out last, with its clock (fake time, ms). */
  #device?: {
    issuedAt: number;
    interval: number;
    lastPoll?: number;
    used: boolean;
  };
  #faults = new Map<string, (Fault | null)[]>();
  #nextId = 9007199254740993n; // above 2^53: ids must not pass through a float
  #seq = 0;
  #dropBytes: boolean;
  #servers: Deno.HttpServer[] = [];
  #listeners: Deno.Listener[] = [];
  #conns = new Set<Deno.Conn>();
  /** Releases requests held open by a `stall` fault. */
  #stalled = new Set<() => void>();
  oauthUrl = "";
  apiUrl = "";
  /** The PCS host: locateupload, superfile2 as a fallback, dlinks. */
  pcsUrl = "";
  cdnUrl = "";
  /** The upload hosts locateupload names: `servers`, then `bak_servers`. */
  uploadUrls: string[] = [];
  /** Upload hosts that are down: they cut or refuse every request. */
  readonly brokenHosts = new Map<string, "cut" | 503>();

  constructor(options: FakeBaiduOptions = {}) {
    this.appKey = options.appKey ?? "fake-app-key";
    this.secretKey = options.secretKey ?? "fake-secret-key";
    this.appName = options.appName ?? "image-agent";
    this.vipType = options.vipType ?? 0;
    this.quotaTotal = options.quotaTotal ?? 2 * 1024 ** 4;
    this.chunkUnit = options.chunkUnit ?? 4 * MIB;
    this.#dropBytes = options.discardBytes ?? false;
    this.codes = new Set(options.codes ?? ["good-code"]);
    this.parentMissingErrno = options.parentMissingErrno ?? -9;
    this.tokenLifetimeSec = options.tokenLifetimeSec ?? 2592000;
    this.deviceExpiresIn = options.deviceExpiresIn ?? 1800;
    this.resumeByPath = options.resumeByPath ?? false;
    this.now = options.now ?? Date.now;
    if (options.appFolder !== false) this.mkdir(this.appRoot);
  }

  static async start(options: FakeBaiduOptions = {}): Promise<FakeBaidu> {
    const fake = new FakeBaidu(options);
    fake.oauthUrl = await fake.#serve("oauth");
    fake.apiUrl = await fake.#serve("api");
    fake.pcsUrl = await fake.#serve("pcs");
    fake.cdnUrl = await fake.#serve("cdn");
    for (let i = 0; i < 2; i++) {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      fake.#listeners.push(listener);
      const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
      fake.uploadUrls.push(url);
      fake.#acceptUploads(listener, url);
    }
    return fake;
  }

  #serve(host: HostName): Promise<string> {
    return new Promise((resolve) => {
      const server = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        onListen: ({ port }) => resolve(`http://127.0.0.1:${port}`),
        onError: () => new Response("internal error", { status: 500 }),
      }, (req) => this.#handle(host, req));
      this.#servers.push(server);
    });
  }

  async close(): Promise<void> {
    for (const release of this.#stalled) release();
    for (const l of this.#listeners) l.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    await Promise.all(this.#servers.map((s) => s.shutdown()));
  }

  async #acceptUploads(listener: Deno.Listener, origin: string): Promise<void> {
    try {
      for await (const conn of listener) {
        this.#conns.add(conn);
        this.#uploadConn(conn, origin).catch(() => {}).finally(() => {
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch { /* already closed */ }
        });
      }
    } catch { /* listener closed */ }
  }

  /**
   * Takes upload host `index` down: it closes every connection at once
   * ("cut") or answers 503 to every request.
   */
  breakUploadHost(index: number, how: "cut" | 503 = "cut"): void {
    this.brokenHosts.set(this.uploadUrls[index], how);
  }

  /** One request on an upload host, answered by the same handler. */
  async #uploadConn(conn: Deno.Conn, origin: string): Promise<void> {
    const down = this.brokenHosts.get(origin);
    if (down === "cut") return; // closed before a byte is read
    // Read pieces are kept in a list and joined once: parts are megabytes.
    const pieces: Uint8Array[] = [];
    let have = 0;
    const more = async (): Promise<boolean> => {
      const piece = new Uint8Array(256 * 1024);
      const n = await conn.read(piece);
      if (n === null) return false;
      pieces.push(piece.subarray(0, n));
      have += n;
      return true;
    };
    let end = -1;
    while ((end = indexOfCrlf2(join(pieces))) < 0) {
      if (!(await more())) return;
    }
    const first = join(pieces);
    pieces.splice(0, pieces.length, first.subarray(end + 4));
    have = first.length - end - 4;
    const [line, ...lines] = new TextDecoder().decode(first.subarray(0, end))
      .split("\r\n");
    const [method, target] = line.split(" ");
    const headers = new Headers();
    for (const l of lines) {
      const i = l.indexOf(":");
      if (i > 0) headers.append(l.slice(0, i).trim(), l.slice(i + 1).trim());
    }
    const length = Number(headers.get("content-length"));
    if (down === 503) {
      while (have < length && await more()) { /* read the body */ }
      const text = JSON.stringify({
        error_code: 31212,
        error_msg: "service unavailable",
      });
      await writeAllConn(
        conn,
        new TextEncoder().encode(
          `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${text.length}\r\nconnection: close\r\n\r\n${text}`,
        ),
      );
      return;
    }
    const isPart = target.startsWith("/rest/2.0/pcs/superfile2");
    // The fault is taken as the request line arrives, so parts in flight
    // at once each get their own.
    const taken = isPart ? { fault: this.#count("upload") } : undefined;
    const next = taken?.fault;
    if (next && (next.cutAfter !== undefined || next.stall)) {
      this.#time("upload");
      if (next.cutAfter !== undefined) {
        while (have < next.cutAfter && await more()) { /* read on */ }
        return; // closes the connection with the client still sending
      }
      while (await more().catch(() => false)) pieces.length = 0;
      return;
    }
    if (Number.isFinite(length)) {
      while (have < length) if (!(await more())) return;
    }
    const buf = join(pieces);
    const req = new Request(`${origin}${target}`, {
      method,
      headers,
      body: method === "POST" && Number.isFinite(length)
        ? buf.slice(0, length)
        : undefined,
    });
    const res = await this.#handle("upload", req, taken);
    const out: Uint8Array[] = [];
    let broken = false;
    try {
      for await (const c of res.body ?? []) out.push(c);
    } catch {
      broken = true;
    }
    let n = 0;
    for (const c of out) n += c.length;
    const head = [`HTTP/1.1 ${res.status} ${res.statusText || "X"}`];
    res.headers.forEach((v, k) => {
      if (k !== "content-length") head.push(`${k}: ${v}`);
    });
    head.push(`content-length: ${broken ? n + 64 : n}`, "connection: close");
    await writeAllConn(
      conn,
      new TextEncoder().encode(head.join("\r\n") + "\r\n\r\n"),
    );
    for (const c of out) await writeAllConn(conn, c);
  }

  /** The endpoints block of a config pointing here. */
  get endpoints() {
    return { oauth: this.oauthUrl, api: this.apiUrl, upload: this.pcsUrl };
  }

  /** The app's own folder, `/apps/<appName>`. */
  get appRoot(): string {
    return `/apps/${this.appName}`;
  }

  /** Issues a fresh token pair, as a finished login would. */
  issueTokens(): { access_token: string; refresh_token: string } {
    this.accessToken = `AT-${crypto.randomUUID()}`;
    this.refreshToken = `RT-${crypto.randomUUID()}`;
    this.accessExpiresAt = this.now() + this.tokenLifetimeSec * 1000;
    this.issued.push(this.accessToken, this.refreshToken);
    return { access_token: this.accessToken, refresh_token: this.refreshToken };
  }

  /** Makes the current access token expired (refresh still works). */
  expireAccessToken(): void {
    this.accessToken = `dead-${crypto.randomUUID()}`;
  }

  /**
   * Queues `fault` for the next `times` calls of `name`, after letting
   * `after` calls through untouched.
   */
  fail(name: string, fault: Fault, times = 1, after = 0): void {
    const list = this.#faults.get(name) ?? [];
    for (let i = 0; i < after; i++) list.push(null);
    for (let i = 0; i < times; i++) list.push(fault);
    this.#faults.set(name, list);
  }

  /** Expires every open upload session. */
  expireSessions(): void {
    for (const s of this.sessions.values()) s.expired = true;
  }

  get used(): number {
    let n = 0;
    for (const f of this.files.values()) n += f.size;
    return n;
  }

  /** Makes a folder and its parents directly, as the web page would. */
  mkdir(path: string): void {
    const parts = path.split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const dir = "/" + parts.slice(0, i).join("/");
      if (!this.dirs.has(dir)) {
        this.dirs.set(dir, {
          fsId: this.#nextId++,
          path: dir,
          mtime: Math.floor(Date.now() / 1000),
        });
      }
    }
  }

  /** Removes a folder and everything in it directly. */
  rmdir(path: string): void {
    for (const map of [this.files, this.dirs] as Map<string, unknown>[]) {
      for (const p of [...map.keys()]) {
        if (p === path || p.startsWith(`${path}/`)) map.delete(p);
      }
    }
  }

  /** Stores a file directly (its folders too), as if uploaded earlier. */
  put(path: string, bytes: Uint8Array): StoredFile {
    this.mkdir(path.slice(0, path.lastIndexOf("/")));
    const blockList = splitMd5(bytes, this.chunkUnit);
    const f: StoredFile = {
      fsId: this.#nextId++,
      path,
      size: bytes.length,
      md5: md5(bytes),
      blockList,
      bytes: this.#dropBytes ? undefined : bytes,
      mtime: Math.floor(Date.now() / 1000),
    };
    this.files.set(path, f);
    return f;
  }

  /**
   * A request id in one of the forms Baidu uses: a number, a string, or a
   * big number written in exponent form.
   */
  #rid(): number | string {
    const n = this.#seq++;
    return n % 3 === 0 ? n : n % 3 === 1 ? String(n) : `__RAW__${n}.5e17`;
  }

  #count(name: string): Fault | undefined {
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
    const list = this.#faults.get(name);
    return list?.shift() ?? undefined;
  }

  #time(name: string): void {
    this.times.set(name, [...(this.times.get(name) ?? []), Date.now()]);
  }

  /** Drops every queued fault. */
  clearFaults(): void {
    this.#faults.clear();
  }

  /** Faults still queued for `name` (null entries are pass-throughs). */
  pending(name: string): number {
    return this.#faults.get(name)?.filter((f) => f !== null).length ?? 0;
  }

  /** A refused request: remembered for the test, answered like Baidu. */
  #refuse(why: string, response: Response): Response {
    this.refused.push(why);
    return response;
  }

  /**
   * Routes a request by host, path, verb and `method`, checks where its
   * parameters are, draws its fault and answers it. `taken`: the fault
   * already drawn for this call by the upload host.
   */
  async #handle(
    host: HostName,
    req: Request,
    taken?: { fault?: Fault },
  ): Promise<Response> {
    const url = new URL(req.url);
    this.log.push(`${req.method} ${url.pathname}${url.search}`);
    const q = strictQuery(url.search);
    const p = url.pathname;
    if (!q) {
      await discard(req);
      return this.#refuse(
        `${req.method} ${p}: the query is not percent-encoded`,
        json({ error_code: 31023, error_msg: "param error" }, 400),
      );
    }
    const route = ROUTES.find((r) =>
      r.hosts.includes(host) && r.verb === req.method &&
      (typeof r.path === "string" ? r.path === p : r.path.test(p)) &&
      (r.method === undefined || q.get("method") === r.method)
    );
    const what = `${req.method} ${p}${
      q.get("method") ? ` method=${q.get("method")}` : ""
    } on the ${host} host`;
    if (!route) {
      await discard(req);
      const known = ROUTES.some((r) =>
        r.hosts.includes(host) &&
        (typeof r.path === "string" ? r.path === p : r.path.test(p))
      );
      return known
        ? this.#refuse(
          `${what}: no such call`,
          json({ error_code: 3, error_msg: "unsupported api" }, 400),
        )
        : this.#refuse(
          `${what}: not served there`,
          new Response("<html><body>404 Not Found</body></html>", {
            status: 404,
            headers: { "content-type": "text/html" },
          }),
        );
    }
    let name = route.name;
    let form = new URLSearchParams();
    if (req.method === "POST" && name !== "upload") {
      const misplaced = [...q.keys()].filter((k) => !POST_QUERY.has(k));
      const type = req.headers.get("content-type") ?? "";
      if (misplaced.length > 0) {
        await discard(req);
        return this.#refuse(
          `${what}: ${misplaced.join(", ")} in the query`,
          json({ errno: 2, errmsg: "param error", request_id: this.#rid() }),
        );
      }
      if (!type.startsWith("application/x-www-form-urlencoded")) {
        await discard(req);
        return this.#refuse(
          `${what}: body is ${type || "untyped"}, not a form`,
          json({ errno: 2, errmsg: "param error", request_id: this.#rid() }),
        );
      }
      form = new URLSearchParams(await req.text());
      if (name === "create" && form.get("isdir") === "1") name = "mkdir";
    }
    const fault = taken ? taken.fault : this.#count(name);
    this.#time(name);
    if (fault?.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault?.expireToken) this.expireAccessToken();
    if (fault?.fillQuota !== undefined) {
      this.quotaTotal = this.used + fault.fillQuota;
    }
    if (fault?.revoke) {
      this.expireAccessToken();
      this.refreshToken = `dead-${crypto.randomUUID()}`;
    }
    const pcs = host !== "api" && host !== "oauth";
    const special = fault &&
      (fault.dropAfter !== undefined || fault.corrupt || fault.wrongMd5 ||
        fault.ghost || fault.lieSize !== undefined || fault.noSize ||
        fault.needed !== undefined ||
        fault.cutAfter !== undefined || fault.stall ||
        fault.stallAfter !== undefined || fault.noInfo !== undefined ||
        fault.ignoreRange ||
        fault.lost);
    if (fault && !special) {
      if (fault.oauthError) {
        return json(
          { error: fault.oauthError, error_description: "injected" },
          400,
        );
      }
      const extra: Record<string, string> = fault.retryAfter !== undefined
        ? { "retry-after": String(fault.retryAfter) }
        : {};
      if (fault.errorCode !== undefined) {
        await discard(req);
        return json(
          {
            error_code: fault.errorCode,
            error_msg: fault.msg ?? "injected",
            request_id: this.#rid(),
          },
          fault.status ?? 400,
          extra,
        );
      }
      if (fault.errno !== undefined) {
        await discard(req);
        return json(
          {
            errno: fault.errno,
            errmsg: fault.msg ?? "injected",
            request_id: this.#rid(),
          },
          fault.status ?? 200,
          extra,
        );
      }
      if (fault.status) {
        await discard(req);
        return new Response("<html>error</html>", { status: fault.status });
      }
    }
    if (fault?.garbage) {
      await discard(req);
      return new Response('{"errno":0,"list":[{"fs_id":', {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    }
    if (fault?.stall && name !== "upload") {
      await discard(req);
      await this.#hold();
      return dropped();
    }
    const res = await this.#answer(name, req, q, form, url, pcs, fault);
    if (!fault?.lost) return res;
    await res.body?.cancel();
    return dropped();
  }

  async #answer(
    name: string,
    req: Request,
    q: URLSearchParams,
    form: URLSearchParams,
    url: URL,
    pcs: boolean,
    fault?: Fault,
  ): Promise<Response> {
    const p = url.pathname;
    if (name === "token") return this.#token(q);
    if (name === "device") return this.#deviceCode(q);
    if (name === "cdn") return this.#cdn(req, fault);
    const token = q.get("access_token");
    if (
      token !== this.accessToken || !token || this.now() >= this.accessExpiresAt
    ) {
      await discard(req);
      return pcs
        ? json({ error_code: 111, error_msg: "Access token expired" }, 401)
        : json({
          errno: -6,
          errmsg: "access token invalid",
          request_id: this.#rid(),
        });
    }
    switch (name) {
      case "uinfo":
        return json({
          baidu_name: "宠物画像店",
          netdisk_name: "pet-shop",
          vip_type: this.vipType,
          uk: 12345,
          errno: 0,
          request_id: this.#rid(),
        });
      case "quota":
        return json({
          total: this.quotaTotal,
          used: this.used,
          free: this.quotaTotal - this.used,
          expire: false,
          errno: 0,
        });
      case "precreate":
        return this.#precreate(form, fault);
      case "locateupload":
        return this.#locate(q);
      case "upload":
        return await this.#upload(req, q, url.origin, fault);
      case "create":
        return this.#create(form, fault);
      case "mkdir":
        return this.#mkdir(form);
      case "list":
        return this.#list(q);
      case "filemetas":
        return this.#filemetas(q);
      case "delete":
        return this.#delete(q, form, fault);
      case "dlink":
        return this.#dlink(req, q, p);
    }
    return json({ error_code: 3, error_msg: "unsupported api" }, 400);
  }

  #token(q: URLSearchParams): Response {
    if (
      q.get("client_id") !== this.appKey ||
      q.get("client_secret") !== this.secretKey
    ) {
      return json({
        error: "invalid_client",
        error_description: "unknown client",
      }, 401);
    }
    const grant = q.get("grant_type");
    if (grant === "authorization_code") {
      const code = q.get("code") ?? "";
      if (!this.codes.delete(code) || q.get("redirect_uri") !== "oob") {
        return json(
          { error: "invalid_grant", error_description: "bad code" },
          400,
        );
      }
    } else if (grant === "refresh_token") {
      if (!this.refreshToken || q.get("refresh_token") !== this.refreshToken) {
        return json({
          error: "expired_token",
          error_description: "refresh token used",
        }, 400);
      }
    } else if (grant === "device_token") {
      const d = this.#device;
      const now = this.now();
      if (
        q.get("code") !== "DEVICE-CODE" || !d || d.used ||
        now >= d.issuedAt + this.deviceExpiresIn * 1000
      ) {
        return json({
          error: "invalid_grant",
          error_description: "device code invalid, expired or used",
        }, 400);
      }
      // Polling faster than the interval is answered slow_down, and the
      // interval grows by 5 s each time, as the device flow has it.
      const tooSoon = d.lastPoll !== undefined &&
        now - d.lastPoll < d.interval * 1000;
      d.lastPoll = now;
      const next = tooSoon ? "slow_down" : this.deviceQueue.shift();
      if (next === "slow_down") d.interval += 5;
      if (next) return json({ error: next, error_description: next }, 400);
      d.used = true;
    } else {
      return json({ error: "unsupported_grant_type" }, 400);
    }
    const pair = this.issueTokens();
    return json({
      ...pair,
      expires_in: this.tokenLifetimeSec,
      ...(this.tokenScope === null ? {} : { scope: this.tokenScope }),
      session_key: "SK-secret",
      session_secret: "SS-secret",
    });
  }

  #deviceCode(q: URLSearchParams): Response {
    if (q.get("client_id") !== this.appKey) {
      return json({ error: "invalid_client" }, 400);
    }
    if (
      q.get("response_type") !== "device_code" ||
      !/\bnetdisk\b/.test(q.get("scope") ?? "")
    ) {
      return json({ error: "invalid_request" }, 400);
    }
    this.#device = { issuedAt: this.now(), interval: 5, used: false };
    return json({
      device_code: "DEVICE-CODE",
      user_code: "ABCD-1234",
      verification_url: `${this.oauthUrl}/device`,
      qrcode_url: `${this.oauthUrl}/qr/ABCD-1234`,
      expires_in: this.deviceExpiresIn,
      interval: 5,
    });
  }

  #maxChunk(): number {
    return this.vipType >= 2
      ? 8 * this.chunkUnit
      : this.vipType === 1
      ? 4 * this.chunkUnit
      : this.chunkUnit;
  }

  /** Why a write to `path` is refused, as an answer; undefined when fine. */
  #pathProblem(path: string): Response | undefined {
    if (!path.startsWith(`${this.appRoot}/`) || path.includes("/../")) {
      return json({ errno: 31064, errmsg: "upload path error" });
    }
    const name = path.split("/").pop() ?? "";
    if (
      name === "" || /[\\?|"><:*]/.test(name) || /^[.\s]|[.\s]$/.test(name) ||
      this.rejectName?.(name)
    ) {
      return json({ errno: -7, errmsg: "file name invalid" });
    }
    return undefined;
  }

  /**
   * Why a block list does not fit `size`, or undefined: lowercase hex MD5s,
   * as many as the member's chunk size allows (exactly `chunkUnit` chunks
   * for ordinary accounts; VIPs may pick a larger size), at most 1024.
   */
  #blockProblem(list: unknown, size: number): string | undefined {
    if (!Array.isArray(list) || list.length === 0) return "not a list";
    if (!list.every((m) => typeof m === "string" && MD5_HEX.test(m))) {
      return "not lowercase 32-digit hex MD5s";
    }
    const most = Math.max(1, Math.ceil(size / this.chunkUnit));
    const least = Math.max(1, Math.ceil(size / this.#maxChunk()));
    if (list.length > most || list.length < least) {
      return `${list.length} blocks for ${size} bytes`;
    }
    if (list.length > 1024) return "more than 1024 blocks";
    return undefined;
  }

  #precreate(form: URLSearchParams, fault?: Fault): Response {
    const path = form.get("path") ?? "";
    const sizeText = form.get("size") ?? "";
    const size = Number(sizeText);
    let blockList: string[];
    try {
      blockList = JSON.parse(form.get("block_list") ?? "");
    } catch {
      return this.#param("precreate: block_list is not JSON");
    }
    const bad = this.#pathProblem(path);
    if (bad) return bad;
    if (!this.dirs.has(parentOf(path))) return this.#parentMissing();
    if (this.dirs.has(path)) {
      return json({ errno: -8, errmsg: "a folder of that name exists" });
    }
    if (!/^\d+$/.test(sizeText)) return this.#param("precreate: size");
    if (form.get("isdir") !== "0") return this.#param("precreate: isdir");
    if (form.get("autoinit") !== "1") return this.#param("precreate: autoinit");
    const rtype = form.get("rtype") ?? "";
    if (!/^[0-3]$/.test(rtype)) return this.#param("precreate: rtype");
    const blocks = this.#blockProblem(blockList, size);
    if (blocks) return this.#param(`precreate: block_list ${blocks}`);
    for (const key of ["content-md5", "slice-md5"]) {
      const v = form.get(key);
      if (v !== null && !MD5_HEX.test(v)) {
        return this.#param(`precreate: ${key}`);
      }
    }
    for (const key of ["local_ctime", "local_mtime"]) {
      const v = form.get(key);
      if (v !== null && !/^\d+$/.test(v)) {
        return this.#param(`precreate: ${key}`);
      }
    }
    const limit = (this.vipType >= 2 ? 20 : this.vipType === 1 ? 10 : 4) *
      1024 ** 3;
    if (size > limit) return json({ errno: 31365, errmsg: "file too large" });
    const existing = this.files.get(path);
    if (size > this.quotaTotal - this.used + (existing?.size ?? 0)) {
      return json({ errno: -10, errmsg: "capacity full" });
    }
    const contentMd5 = form.get("content-md5");
    const twin = [...this.files.values()].find((f) =>
      f.size === size && contentMd5 && f.md5 === contentMd5
    );
    if (twin) {
      const f = { ...twin, fsId: this.#nextId++, path };
      this.files.set(path, f);
      return json({
        errno: 0,
        return_type: 2,
        path,
        info: { fs_id: f.fsId, size, path },
      });
    }
    // The same upload again (its uploadid sent back, or with
    // resumeByPath the same path and block list) continues the session it
    // had: only the parts still missing are listed.
    const same = (s: Session) =>
      !s.expired && s.path === path && s.size === size && s.rtype === rtype &&
      JSON.stringify(s.blockList) === JSON.stringify(blockList);
    const asked = this.sessions.get(form.get("uploadid") ?? "");
    let uploadId = asked && same(asked) ? form.get("uploadid")! : undefined;
    if (!uploadId && this.resumeByPath) {
      uploadId = [...this.sessions].find(([, s]) => same(s))?.[0];
    }
    if (!uploadId) {
      uploadId = `N1-${crypto.randomUUID()}`;
      this.uploadIds.push(uploadId);
      this.sessions.set(uploadId, {
        path,
        size,
        blockList,
        rtype,
        parts: new Map(),
        expired: false,
      });
    }
    const held = this.sessions.get(uploadId)!.parts;
    return json({
      errno: 0,
      path,
      uploadid: uploadId,
      return_type: 1,
      block_list: fault?.needed ??
        blockList.map((_, i) => i).filter((i) => !held.has(i)),
      request_id: this.#rid(),
    });
  }

  #parentMissing(): Response {
    return json({
      errno: this.parentMissingErrno,
      errmsg: this.parentMissingErrno === 31063
        ? "parent folder does not exist"
        : "file or folder does not exist",
      request_id: this.#rid(),
    });
  }

  /** `a/b(1).jpg`, `a/b(2).jpg`, ...: the first name nothing holds. */
  #freeName(path: string): string {
    const slash = path.lastIndexOf("/");
    const name = path.slice(slash + 1);
    const dot = name.lastIndexOf(".");
    const [stem, ext] = dot > 0
      ? [name.slice(0, dot), name.slice(dot)]
      : [name, ""];
    for (let i = 1;; i++) {
      const p = `${path.slice(0, slash)}/${stem}(${i})${ext}`;
      if (!this.files.has(p) && !this.dirs.has(p)) return p;
    }
  }

  /** create with isdir=1: a folder, whose parent must exist. */
  #mkdir(form: URLSearchParams): Response {
    const path = (form.get("path") ?? "").replace(/\/+$/, "");
    if (path !== this.appRoot) {
      const bad = this.#pathProblem(path);
      if (bad) return bad;
      if (!this.dirs.has(parentOf(path))) return this.#parentMissing();
    }
    const rtype = form.get("rtype") ?? "0";
    if (!/^[01]$/.test(rtype)) {
      return this.#param("create folder: rtype must be 0 or 1");
    }
    let target = path;
    if (this.dirs.has(path) || this.files.has(path)) {
      if (rtype === "0") {
        return json({
          errno: -8,
          errmsg: "file already exists",
          request_id: this.#rid(),
        });
      }
      target = this.#freeName(path);
    }
    this.mkdir(target);
    const d = this.dirs.get(target)!;
    return json({
      errno: 0,
      fs_id: d.fsId,
      category: 6,
      path: target,
      ctime: d.mtime,
      mtime: d.mtime,
      isdir: 1,
      status: 0,
      request_id: this.#rid(),
    });
  }

  /** errno 2, with the reason kept for the test. */
  #param(why: string): Response {
    return this.#refuse(
      why,
      json({ errno: 2, errmsg: "param error", request_id: this.#rid() }),
    );
  }

  #locate(q: URLSearchParams): Response {
    const s = this.sessions.get(q.get("uploadid") ?? "");
    if (
      q.get("appid") !== APPID || q.get("upload_version") !== "2.0" || !s ||
      s.path !== q.get("path")
    ) {
      return this.#refuse(
        "locateupload: appid, path, uploadid or upload_version wrong",
        json({ error_code: 31023, error_msg: "param error" }, 400),
      );
    }
    return json({
      servers: [{ server: this.uploadUrls[0] }],
      bak_servers: [{ server: this.uploadUrls[1] }],
      quic_servers: [],
      host: new URL(this.uploadUrls[0]).host,
      expire: 60,
      error_code: 0,
      request_id: this.#rid(),
    });
  }

  async #upload(
    req: Request,
    q: URLSearchParams,
    origin: string,
    fault?: Fault,
  ): Promise<Response> {
    const s = this.sessions.get(q.get("uploadid") ?? "");
    const partseq = q.get("partseq") ?? "";
    if (!s || s.path !== q.get("path") || q.get("type") !== "tmpfile") {
      await discard(req);
      return json({
        error_code: 31355,
        error_msg: "param error: uploadid not match",
      }, 400);
    }
    if (s.expired) {
      await discard(req);
      // The bare form of the message (BaiduPCS-Go #321 quotes it with
      // "... has expire" after it, but a client must not need that).
      return json({
        error_code: 31299,
        error_msg: "Expried Time Not Match",
      }, 400);
    }
    if (
      req.headers.get("transfer-encoding")?.includes("chunked") ||
      !req.headers.get("content-length")
    ) {
      await discard(req);
      return json(
        { error_code: 31211, error_msg: "chunked body refused" },
        400,
      );
    }
    if (fault?.stall) {
      // Never answered: the request is held until the client gives up.
      await discard(req);
      await this.#hold();
      return dropped();
    }
    if (fault?.dropAfter !== undefined || fault?.cutAfter !== undefined) {
      // The whole body is read (an unread body stalls the connection), the
      // part is not kept, and the answer breaks after a few bytes.
      await discard(req);
      return dropped();
    }
    const body = new Uint8Array(await req.arrayBuffer());
    const part = singlePart(body, req.headers.get("content-type") ?? "");
    if (typeof part === "string") {
      return this.#refuse(
        `superfile2: ${part}`,
        json({ error_code: 31023, error_msg: "param error" }, 400),
      );
    }
    const index = Number(partseq);
    if (!/^\d+$/.test(partseq) || index >= s.blockList.length) {
      return this.#refuse(
        `superfile2: partseq ${partseq}`,
        json({ error_code: 31023, error_msg: "param error" }, 400),
      );
    }
    if (part.data.length > this.#maxChunk()) {
      return json({ error_code: 31364, error_msg: "chunk too large" }, 400);
    }
    const bytes = part.data;
    const sum = md5(bytes);
    const uploadId = q.get("uploadid")!;
    this.uploadsByHost.set(origin, (this.uploadsByHost.get(origin) ?? 0) + 1);
    this.partsByUpload.set(uploadId, [
      ...(this.partsByUpload.get(uploadId) ?? []),
      index,
    ]);
    s.parts.set(index, {
      md5: sum,
      bytes: this.#dropBytes ? undefined : bytes.slice(),
      length: bytes.length,
    });
    return json({
      md5: fault?.wrongMd5 ? "0".repeat(32) : sum,
      request_id: this.#rid(),
    });
  }

  /**
   * Holds a request unanswered until the fake closes (the client must give
   * up by itself; `req.signal` is not watched, Deno warns about it).
   */
  #hold(): Promise<void> {
    return new Promise<void>((resolve) => {
      const release = () => {
        this.#stalled.delete(release);
        resolve();
      };
      this.#stalled.add(release);
    });
  }

  #create(form: URLSearchParams, fault?: Fault): Response {
    const path = form.get("path") ?? "";
    const s = this.sessions.get(form.get("uploadid") ?? "");
    if (!s || s.path !== path) {
      return json({ errno: 31355, errmsg: "uploadid not match" });
    }
    if (form.get("isdir") !== "0") return this.#param("create: isdir");
    if (form.get("rtype") !== s.rtype) {
      return this.#param("create: rtype differs from precreate's");
    }
    if (s.expired) {
      return json({ errno: 31363, errmsg: "block miss in superfile2" });
    }
    const size = Number(form.get("size"));
    let blockList: string[];
    try {
      blockList = JSON.parse(form.get("block_list") ?? "[]");
    } catch {
      return this.#param("create: block_list is not JSON");
    }
    if (
      JSON.stringify(blockList) !== JSON.stringify(s.blockList) ||
      size !== s.size
    ) {
      return json({
        errno: 31190,
        errmsg: "file not found: block_list or size mismatch",
      });
    }
    let total = 0;
    for (let i = 0; i < blockList.length; i++) {
      const part = s.parts.get(i);
      if (!part) {
        return json({ errno: 31363, errmsg: "block miss in superfile2" });
      }
      if (part.md5 !== blockList[i]) {
        return json({ errno: 31190, errmsg: "md5 mismatch" });
      }
      if (i < blockList.length - 1) {
        const first = s.parts.get(0)!.length;
        if (
          part.length !== first ||
          (blockList.length > 1 && first < this.chunkUnit)
        ) {
          return json({ errno: 31299, errmsg: "first chunk smaller than 4MB" });
        }
        if (this.vipType === 0 && part.length !== this.chunkUnit) {
          return json({ errno: 31364, errmsg: "chunk size not allowed" });
        }
      }
      total += part.length;
    }
    if (total !== size) return json({ errno: 31190, errmsg: "size mismatch" });
    if (!this.dirs.has(parentOf(path))) return this.#parentMissing();
    let target = path;
    const clash = this.files.get(path);
    if (this.dirs.has(path) || (clash && s.rtype === "0")) {
      return json({ errno: -8, errmsg: "file already exists" });
    }
    if (
      clash &&
      (s.rtype === "1" ||
        (s.rtype === "2" &&
          JSON.stringify(clash.blockList) !== JSON.stringify(blockList)))
    ) {
      target = this.#freeName(path);
    }
    let bytes: Uint8Array | undefined;
    if (!this.#dropBytes) {
      bytes = new Uint8Array(size);
      let off = 0;
      for (let i = 0; i < blockList.length; i++) {
        bytes.set(s.parts.get(i)!.bytes!, off);
        off += s.parts.get(i)!.length;
      }
    }
    const whole = bytes ? md5(bytes) : `multi-${blockList.join("")}`;
    this.sessions.delete(form.get("uploadid")!);
    const f: StoredFile = {
      fsId: this.#nextId++,
      path: target,
      size,
      md5: whole,
      blockList,
      bytes,
      mtime: Number(form.get("local_mtime") ?? 0),
    };
    if (!fault?.ghost) this.files.set(target, f);
    return json({
      errno: 0,
      fs_id: f.fsId,
      md5: "cloud" + whole.slice(5),
      server_filename: target.split("/").pop(),
      path: target,
      ...(fault?.noSize ? {} : { size: fault?.lieSize ?? size }),
      isdir: 0,
      category: 3,
    });
  }

  #entry(f: StoredFile) {
    return {
      fs_id: f.fsId,
      path: f.path,
      server_filename: f.path.split("/").pop(),
      size: f.size,
      isdir: 0,
      category: 3,
      md5: "not-the-real-md5",
      server_mtime: f.mtime,
      local_mtime: f.mtime,
    };
  }

  #dirEntry(d: StoredFolder) {
    return {
      fs_id: d.fsId,
      path: d.path,
      server_filename: d.path.split("/").pop(),
      size: 0,
      isdir: 1,
      category: 6,
      server_mtime: d.mtime,
      local_mtime: d.mtime,
    };
  }

  #list(q: URLSearchParams): Response {
    const dirText = q.get("dir");
    const start = q.get("start") ?? "0";
    const limitText = q.get("limit") ?? "1000";
    if (
      !dirText?.startsWith("/") || !/^\d+$/.test(start) ||
      !/^\d+$/.test(limitText) || Number(limitText) > 1000
    ) {
      return this.#param("list: dir, start or limit");
    }
    const dir = dirText.replace(/\/+$/, "") || "/";
    const limit = Number(limitText);
    if (!this.dirs.has(dir)) return json({ errno: -9, errmsg: "not found" });
    // Folders first, then files, each by name: grouped by type, as Baidu does.
    const byName = (a: { path: string }, b: { path: string }) =>
      a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
    const entries = [
      ...[...this.dirs.values()].filter((d) => parentOf(d.path) === dir)
        .sort(byName).map((d) => this.#dirEntry(d)),
      ...[...this.files.values()].filter((f) => parentOf(f.path) === dir)
        .sort(byName).map((f) => this.#entry(f)),
    ];
    const page = entries.slice(Number(start), Number(start) + limit);
    return json({ errno: 0, list: page, request_id: this.#rid() });
  }

  #filemetas(q: URLSearchParams): Response {
    const raw = q.get("fsids") ?? "";
    if (!/^\[(\d+(,\d+)*)?\]$/.test(raw)) {
      return this.#param("filemetas: fsids is not a JSON list of integers");
    }
    const ids = raw.slice(1, -1).split(",").filter(Boolean).map((s) =>
      BigInt(s)
    );
    if (ids.length > 100) return this.#param("filemetas: over 100 ids");
    const folders = [...this.dirs.values()].filter((d) => ids.includes(d.fsId))
      .map((d) => ({
        ...this.#dirEntry(d),
        filename: d.path.split("/").pop(),
      }));
    const files = [...this.files.values()].filter((f) => ids.includes(f.fsId))
      .map((f) => ({
        ...this.#entry(f),
        filename: f.path.split("/").pop(),
        ...(q.get("dlink") === "1"
          ? {
            dlink:
              `${this.pcsUrl}/file/${f.fsId}?fid=${f.fsId}&sign=SIGNED-SECRET&expires=8h`,
          }
          : {}),
      }));
    return json({
      errno: 0,
      list: [...folders, ...files],
      request_id: this.#rid(),
    });
  }

  #delete(q: URLSearchParams, form: URLSearchParams, fault?: Fault): Response {
    if (q.get("opera") !== "delete") {
      return this.#param(`filemanager: opera ${q.get("opera")}`);
    }
    if (!/^[012]$/.test(form.get("async") ?? "")) {
      return this.#param("filemanager: async");
    }
    let paths: unknown;
    try {
      paths = JSON.parse(form.get("filelist") ?? "");
    } catch {
      return this.#param("filemanager: filelist is not JSON");
    }
    if (
      !Array.isArray(paths) || paths.length === 0 ||
      !paths.every((p) => typeof p === "string")
    ) {
      return this.#param("filemanager: filelist is not a list of paths");
    }
    if (fault?.noInfo === "kept") {
      return json({ errno: 0, request_id: this.#rid() });
    }
    const info = (paths as string[]).map((path) => {
      let had = this.files.delete(path);
      if (!had && this.dirs.has(path) && path !== this.appRoot) {
        this.rmdir(path);
        had = true;
      }
      return { errno: had ? 0 : -9, path };
    });
    if (fault?.noInfo === "deleted") {
      return json({ errno: 0, request_id: this.#rid() });
    }
    // Every path already gone: -9 for the whole call; some: 12 (a batch
    // that failed in part); the items say which in both cases.
    const gone = info.filter((i) => i.errno !== 0).length;
    return json({
      errno: gone === 0 ? 0 : gone === info.length ? -9 : 12,
      info,
      request_id: this.#rid(),
    });
  }

  #dlink(req: Request, q: URLSearchParams, p: string): Response {
    this.userAgents.push(req.headers.get("user-agent") ?? "");
    if (req.headers.get("user-agent") !== "pan.baidu.com") {
      return json({ error_code: 31326, error_msg: "anti hotlinking" }, 403);
    }
    if (q.get("sign") !== "SIGNED-SECRET") {
      return json({ error_code: 31362, error_msg: "sign error" }, 403);
    }
    const id = p.slice("/file/".length);
    const f = [...this.files.values()].find((x) => String(x.fsId) === id);
    if (!f) {
      return json({ error_code: 31066, error_msg: "file does not exist" }, 404);
    }
    return new Response(null, {
      status: 302,
      headers: { location: `${this.cdnUrl}/cdn/${id}?sig=CDN-SIGNATURE` },
    });
  }

  #cdn(req: Request, fault?: Fault): Response {
    const url = new URL(req.url);
    if (req.headers.get("user-agent") !== "pan.baidu.com") {
      return json({ error_code: 31326, error_msg: "anti hotlinking" }, 403);
    }
    if (url.searchParams.get("sig") !== "CDN-SIGNATURE") {
      return json({ error_code: 31362, error_msg: "sign error" }, 403);
    }
    const id = url.pathname.slice("/cdn/".length);
    const f = [...this.files.values()].find((x) => String(x.fsId) === id);
    if (!f || !f.bytes) return new Response("not found", { status: 404 });
    let start = 0;
    if (req.headers.get("range")) this.ranges.push(req.headers.get("range")!);
    const range = fault?.ignoreRange
      ? null
      : /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
    if (range) start = Number(range[1]);
    let body = f.bytes.subarray(start);
    if (fault?.corrupt && body.length > 0) {
      body = body.slice();
      body[0] ^= 0xff;
    }
    const headers: Record<string, string> = {
      "content-length": String(body.length),
      "content-type": "application/octet-stream",
    };
    if (range) {
      headers["content-range"] = `bytes ${start}-${f.size - 1}/${f.size}`;
    }
    const status = range ? 206 : 200;
    if (fault?.stallAfter !== undefined) {
      const first = body.slice(0, fault.stallAfter);
      const hold = () => this.#hold();
      let sent = false;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (!sent) {
            sent = true;
            c.enqueue(first);
            return;
          }
          await hold();
          c.error(new Error("the fake closed"));
        },
      }, { highWaterMark: 0 });
      return new Response(stream, { status, headers });
    }
    if (fault?.dropAfter !== undefined) {
      // The first bytes go out (and get time to reach the client) before
      // the connection breaks; erroring at once would lose them unsent.
      const cut = body.subarray(0, fault.dropAfter);
      let sent = false;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (!sent) {
            sent = true;
            c.enqueue(cut.slice());
            return;
          }
          await new Promise((r) => setTimeout(r, 100));
          c.error(new Error("connection dropped by the fake"));
        },
      }, { highWaterMark: 0 });
      return new Response(stream, { status, headers });
    }
    return new Response(body.slice(), { status, headers });
  }
}

/**
 * The query as a server reads it with plain percent-decoding: `+` stays a
 * plus (only a form body turns it into a space). Null when malformed.
 */
function strictQuery(search: string): URLSearchParams | null {
  const out = new URLSearchParams();
  for (const pair of search.replace(/^\?/, "").split("&")) {
    if (pair === "") continue;
    const i = pair.indexOf("=");
    try {
      out.append(
        decodeURIComponent(i < 0 ? pair : pair.slice(0, i)),
        i < 0 ? "" : decodeURIComponent(pair.slice(i + 1)),
      );
    } catch {
      return null;
    }
  }
  return out;
}

/** `/a/b` for `/a/b/c.jpg`. */
function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/** Reads and drops a request body nobody will look at. */
async function discard(req: Request): Promise<void> {
  if (req.body && !req.bodyUsed) await req.body.cancel().catch(() => {});
}

/**
 * The one part of a superfile2 body: a field named `file` with a plain
 * ASCII file name, or why the body is not that.
 */
function singlePart(
  body: Uint8Array,
  contentType: string,
): { filename: string; data: Uint8Array } | string {
  const m = /^multipart\/form-data;\s*boundary=("?)([^";]+)\1\s*$/i.exec(
    contentType,
  );
  if (!m) return `content-type "${contentType}" is not multipart`;
  const enc = new TextEncoder();
  const open = enc.encode(`--${m[2]}\r\n`);
  if (!startsWith(body, open, 0)) return "the body does not open a part";
  const headEnd = indexOfCrlf2(body, open.length);
  if (headEnd < 0) return "the part has no header end";
  const head = body.subarray(open.length, headEnd);
  if (head.some((b) => b > 0x7e)) return "the part header is not ASCII";
  const headers = new TextDecoder().decode(head);
  const disposition =
    /^content-disposition:\s*form-data;\s*name="([^"]*)"(?:;\s*filename="([^"]*)")?\s*$/im
      .exec(headers);
  if (!disposition || disposition[1] !== "file") {
    return 'the part is not the field "file"';
  }
  if (!disposition[2]) return "the part has no file name";
  let close = enc.encode(`\r\n--${m[2]}--\r\n`);
  if (!startsWith(body, close, body.length - close.length)) {
    close = enc.encode(`\r\n--${m[2]}--`);
    if (!startsWith(body, close, body.length - close.length)) {
      return "the body does not close the part";
    }
  }
  return {
    filename: disposition[2],
    data: body.subarray(headEnd + 4, body.length - close.length),
  };
}

function startsWith(b: Uint8Array, prefix: Uint8Array, at: number): boolean {
  if (at < 0 || at + prefix.length > b.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    if (b[at + i] !== prefix[i]) return false;
  }
  return true;
}

function join(pieces: Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0];
  let n = 0;
  for (const p of pieces) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of pieces) {
    out.set(p, n);
    n += p.length;
  }
  pieces.splice(0, pieces.length, out);
  return out;
}

function indexOfCrlf2(b: Uint8Array, from = 0): number {
  for (let i = from; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

async function writeAllConn(conn: Deno.Conn, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function dropped(): Response {
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode('{"md5":"'));
      c.error(new Error("connection dropped by the fake"));
    },
  });
  return new Response(stream, {
    status: 200,
    headers: { "content-length": "64" },
  });
}

function json(
  value: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  const text = JSON.stringify(
    value,
    (_k, v) => typeof v === "bigint" ? `__BIG__${v}` : v,
  )
    .replace(/"__BIG__(\d+)"/g, "$1")
    .replace(/"__RAW__([^"]+)"/g, "$1");
  return new Response(text, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

export function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

function splitMd5(bytes: Uint8Array, chunk: number): string[] {
  const out: string[] = [];
  for (let off = 0; off < bytes.length || out.length === 0; off += chunk) {
    out.push(md5(bytes.subarray(off, off + chunk)));
  }
  return out;
}
