/** Runs `body` and counts the SQLite rows its statements wrote (each cursor's `rowsWritten`). */
export async function rowsWrittenBy(sql: SqlStorage, body: () => unknown): Promise<number> {
  const exec = sql.exec.bind(sql);
  const cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
  sql.exec = function counted<T extends Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]): SqlStorageCursor<T> {
    const cursor = exec<T>(query, ...bindings);
    cursors.push(cursor);
    return cursor;
  };
  try {
    await body();
  } finally {
    sql.exec = exec;
  }
  return cursors.reduce((sum, cursor) => sum + cursor.rowsWritten, 0);
}
