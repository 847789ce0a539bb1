/**
 * The Baidu Netdisk calls image-agent makes, typed: account and quota,
 * the upload sequence (precreate, locateupload, superfile2, create), list,
 * filemetas and delete. Reads are GETs with a query; writes are form POSTs
 * with `method` in the query and everything else in the body. Paths are
 * encoded once, by the form or query encoder.
 */

import { BaiduApiError, type BaiduErrorKind } from "./errors.ts";
import type { Answer, BaiduHttp } from "./http.ts";
import type { FileBody } from "./part_body.ts";

export interface BaiduEndpoints {
  oauth: string;
  api: string;
  upload: string;
}

export interface Account {
  name: string;
  vipType: number;
  uk: string;
}

export interface Quota {
  total: number;
  used: number;
  free: number;
}

export interface RemoteEntry {
  fsId: string;
  path: string;
  name: string;
  size: number;
  isDir: boolean;
  /** The `local_mtime` given at upload (Unix seconds), when listed. */
  localMtime?: number;
}

export interface PrecreateAnswer {
  returnType: number;
  uploadId: string;
  /** Part indexes the server still needs (empty: it did not say). */
  needed: number[];
  /** Where a rapid upload (`returnType` 2) put the file, when it says. */
  path?: string;
}

export interface CreateAnswer {
  fsId: string;
  path: string;
  /** Undefined when the answer gave none: the lookup after it decides. */
  size?: number;
  blockList?: string[];
  /** Found by a lookup after the answer itself was lost. */
  recovered?: boolean;
}

const num = (v: unknown) => (typeof v === "string" ? Number(v) : Number(v));

export class BaiduApi {
  readonly http: BaiduHttp;
  readonly endpoints: BaiduEndpoints;

  constructor(http: BaiduHttp, endpoints: BaiduEndpoints) {
    this.http = http;
    this.endpoints = {
      oauth: endpoints.oauth.replace(/\/+$/, ""),
      api: endpoints.api.replace(/\/+$/, ""),
      upload: endpoints.upload.replace(/\/+$/, ""),
    };
  }

  async account(signal?: AbortSignal): Promise<Account> {
    const a = await this.http.call({
      what: "the account lookup",
      method: "GET",
      url: `${this.endpoints.api}/rest/2.0/xpan/nas`,
      query: { method: "uinfo", vip_version: "v2" },
      signal,
    });
    return {
      name: String(a.baidu_name || a.netdisk_name || ""),
      vipType: num(a.vip_type ?? 0) || 0,
      uk: String(a.uk ?? ""),
    };
  }

  async quota(signal?: AbortSignal): Promise<Quota> {
    const a = await this.http.call({
      what: "the quota lookup",
      method: "GET",
      url: `${this.endpoints.api}/api/quota`,
      query: { checkfree: "1", checkexpire: "1" },
      signal,
    });
    const total = num(a.total ?? 0);
    const used = num(a.used ?? 0);
    const free = a.free !== undefined ? num(a.free) : total - used;
    return { total, used, free: Math.max(0, free) };
  }

  async precreate(
    form: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<PrecreateAnswer> {
    const a = await this.#file("precreate", "the upload start", form, signal);
    const list = Array.isArray(a.block_list) ? a.block_list : [];
    const info = a.info as { path?: unknown } | undefined;
    return {
      returnType: num(a.return_type ?? 1),
      uploadId: String(a.uploadid ?? ""),
      needed: list.map((v) => num(v)).filter((n) => Number.isInteger(n)),
      path: typeof info?.path === "string" ? info.path : undefined,
    };
  }

  /**
   * The upload hosts for a session, best first: the `servers` locateupload
   * names, then its `bak_servers`, then the configured host (alone when the
   * lookup fails).
   */
  async uploadHosts(
    path: string,
    uploadId: string,
    signal?: AbortSignal,
  ): Promise<string[]> {
    const hosts: string[] = [];
    try {
      const a = await this.http.call({
        what: "the upload host lookup",
        method: "GET",
        url: `${this.endpoints.upload}/rest/2.0/pcs/file`,
        query: {
          method: "locateupload",
          appid: "250528",
          path,
          uploadid: uploadId,
          upload_version: "2.0",
        },
        pcs: true,
        signal,
      });
      for (const key of ["servers", "bak_servers"]) {
        const list = a[key];
        if (Array.isArray(list)) {
          for (const s of list) {
            const server = (s as Answer)?.server;
            if (typeof server === "string" && /^https?:\/\//.test(server)) {
              hosts.push(server.replace(/\/+$/, ""));
            }
          }
        }
      }
    } catch (err) {
      if ((err as { kind?: string }).kind === "auth") throw err;
      signal?.throwIfAborted();
      this.http.log.debug(
        "baidu locateupload failed; using the configured host",
      );
    }
    hosts.push(this.endpoints.upload);
    return [...new Set(hosts)];
  }

  /** Sends one part; returns the MD5 the server computed. */
  async uploadPart(
    host: string,
    query: { path: string; uploadid: string; partseq: number },
    body: FileBody,
    boundary: string,
    signal?: AbortSignal,
    noRetry?: BaiduErrorKind[],
  ): Promise<string> {
    const a = await this.http.call({
      what: `the upload of part ${query.partseq + 1}`,
      method: "POST",
      url: `${host}/rest/2.0/pcs/superfile2`,
      query: {
        method: "upload",
        type: "tmpfile",
        path: query.path,
        uploadid: query.uploadid,
        partseq: String(query.partseq),
      },
      file: body,
      headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
      pcs: true,
      signal,
      noRetry,
    });
    return String(a.md5 ?? "");
  }

  async create(
    form: Record<string, string>,
    signal?: AbortSignal,
    noRetry?: BaiduErrorKind[],
  ): Promise<CreateAnswer> {
    const a = await this.#file(
      "create",
      "the upload commit",
      form,
      signal,
      {},
      noRetry,
    );
    return {
      fsId: String(a.fs_id ?? ""),
      path: String(a.path ?? form.path),
      size: a.size === undefined ? undefined : num(a.size),
      blockList: Array.isArray(a.block_list)
        ? a.block_list.map(String)
        : undefined,
    };
  }

  /**
   * Makes one folder (create with `isdir=1`, `rtype=0`: an existing name is
   * refused with errno -8, never renamed). Its parent must exist.
   */
  async createFolder(path: string, signal?: AbortSignal): Promise<void> {
    await this.#file("create", `the creation of the folder "${path}"`, {
      path,
      isdir: "1",
      rtype: "0",
    }, signal);
  }

  /** Every entry of one folder; empty when the folder does not exist. */
  async list(dir: string, signal?: AbortSignal): Promise<RemoteEntry[]> {
    const out: RemoteEntry[] = [];
    const limit = 1000;
    for (let start = 0;; start += limit) {
      let a: Answer;
      try {
        a = await this.http.call({
          what: "the folder listing",
          method: "GET",
          url: `${this.endpoints.api}/rest/2.0/xpan/file`,
          query: {
            method: "list",
            dir,
            start: String(start),
            limit: String(limit),
          },
          signal,
        });
      } catch (err) {
        if ((err as { kind?: string }).kind === "not_found") return out;
        throw err;
      }
      const page = Array.isArray(a.list) ? a.list as Answer[] : [];
      for (const e of page) out.push(entry(e));
      if (page.length < limit) return out;
    }
  }

  /** Details (with download addresses when asked) of up to 100 ids. */
  async filemetas(
    fsIds: string[],
    dlink: boolean,
    signal?: AbortSignal,
  ): Promise<(RemoteEntry & { dlink?: string })[]> {
    const a = await this.http.call({
      what: "the file details lookup",
      method: "GET",
      url: `${this.endpoints.api}/rest/2.0/xpan/multimedia`,
      query: {
        method: "filemetas",
        fsids: `[${fsIds.filter((id) => /^\d+$/.test(id)).join(",")}]`,
        // Asked for only when wanted: the protocol knows dlink=1, not 0.
        ...(dlink ? { dlink: "1" } : {}),
      },
      signal,
    });
    const list = Array.isArray(a.list) ? a.list as Answer[] : [];
    return list.map((e) => ({
      ...entry(e),
      dlink: typeof e.dlink === "string" ? e.dlink : undefined,
    }));
  }

  /**
   * Deletes paths; returns the errno of each path the answer names (0 done,
   * -9 already gone). A path the answer does not name is left out: the
   * caller must find out whether it is gone.
   */
  async delete(
    paths: string[],
    signal?: AbortSignal,
  ): Promise<Map<string, number>> {
    const result = new Map<string, number>();
    let a: Answer;
    try {
      a = await this.#file(
        "filemanager",
        "the delete",
        {
          async: "0",
          filelist: JSON.stringify(paths),
        },
        signal,
        { opera: "delete" },
      );
    } catch (err) {
      // An error with items (errno 12: a batch that failed in part; -9:
      // every path already gone) is answered path by path: the items say
      // which were deleted.
      const e = err as { answer?: Answer };
      if (!(err instanceof BaiduApiError) || !Array.isArray(e.answer?.info)) {
        throw err;
      }
      a = e.answer!;
    }
    const items = Array.isArray(a.info) ? a.info as Answer[] : [];
    for (const i of items) {
      const errno = num(i.errno);
      if (typeof i.path === "string" && Number.isInteger(errno)) {
        result.set(i.path, errno);
      }
    }
    return result;
  }

  #file(
    method: string,
    what: string,
    form: Record<string, string>,
    signal?: AbortSignal,
    extra: Record<string, string> = {},
    noRetry?: BaiduErrorKind[],
  ): Promise<Answer> {
    return this.http.call({
      what,
      method: "POST",
      url: `${this.endpoints.api}/rest/2.0/xpan/file`,
      query: { method, ...extra },
      form,
      signal,
      noRetry,
    });
  }
}

function entry(e: Answer): RemoteEntry {
  const path = String(e.path ?? "");
  return {
    fsId: String(e.fs_id ?? ""),
    path,
    name: String(e.server_filename ?? e.filename ?? path.split("/").pop()),
    size: num(e.size ?? 0),
    isDir: num(e.isdir ?? 0) === 1,
    localMtime: e.local_mtime === undefined ? undefined : num(e.local_mtime),
  };
}
