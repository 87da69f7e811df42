using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;
using Microsoft.Data.Sqlite;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using SQLitePCL;

namespace ShadowNet.Controller.State;

public enum StoreSync
{
    /// <summary>fsync at every commit: committed groups survive power loss (the default).</summary>
    Full,

    /// <summary>WAL written at every commit, fsync at checkpoints: survives a process kill, not power loss.</summary>
    Normal,
}

/// <summary>
/// The embedded store: one SQLite file in WAL mode, opened exclusively (one controller per file), with
/// prepared statements reused for every commit.
/// </summary>
public sealed class SqliteAllocationStore : IAllocationStore
{
    // 'SHNT': marks the file as ours, so that pointing the daemon at some other SQLite database is an error.
    private const int ApplicationId = 0x53484E54;
    private const int SchemaVersion = 2;

    // Version 2 added the misses table; a version 1 store is upgraded in place at open.
    private const string MissesTable = """
        CREATE TABLE IF NOT EXISTS misses(
            id INTEGER PRIMARY KEY,
            time_ms INTEGER NOT NULL,
            application TEXT NOT NULL,
            instance TEXT NOT NULL,
            address BLOB NOT NULL,
            host BLOB,
            window TEXT);
        """;

    private const int SqliteDone = 101;

    private readonly SqliteConnection _connection;
    private readonly sqlite3_stmt _begin;
    private readonly sqlite3_stmt _commit;
    private readonly sqlite3_stmt _rollback;
    private readonly sqlite3_stmt _upsert;
    private readonly sqlite3_stmt _delete;
    private readonly sqlite3_stmt _setSequence;
    private readonly sqlite3_stmt _insertMiss;
    private readonly sqlite3_stmt _checkpoint;
    private byte[] _utf8 = new byte[256];
    private int _commitsSinceCheckpoint;

    // What the upsert statement has bound now for the columns that rarely change from row to row.
    private int _boundFamily = -1;
    private object? _boundPool = Unbound;
    private object? _boundApplication = Unbound;
    private static readonly object Unbound = new();

    private SqliteAllocationStore(string path, SqliteConnection connection)
    {
        Location = path;
        _connection = connection;
        _begin = Prepare("BEGIN IMMEDIATE");
        _commit = Prepare("COMMIT");
        _rollback = Prepare("ROLLBACK");
        _upsert = Prepare(
            "INSERT INTO leases(address, family, pool, state, application, instance, preallocated, since_ms, host) " +
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(address) DO UPDATE SET family = excluded.family, " +
            "pool = excluded.pool, state = excluded.state, application = excluded.application, instance = excluded.instance, " +
            "preallocated = excluded.preallocated, since_ms = excluded.since_ms, host = excluded.host");
        _delete = Prepare("DELETE FROM leases WHERE address = ?1");
        _setSequence = Prepare("UPDATE meta SET value = ?1 WHERE key = 'sequence'");
        _insertMiss = Prepare("INSERT INTO misses(time_ms, application, instance, address, host, window) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
        _checkpoint = Prepare("PRAGMA wal_checkpoint(PASSIVE)");
        CommittedSequence = long.Parse(ScalarOf(connection, "SELECT value FROM meta WHERE key = 'sequence'") ?? "0", CultureInfo.InvariantCulture);
    }

    public string Location { get; }

    public long CommittedSequence { get; private set; }

    /// <summary>
    /// Opens or creates the store. A file that is not a ShadowNet store, is damaged, or is held by another
    /// process is a <see cref="StateStoreException"/> naming the file; it is never replaced by a fresh one.
    /// </summary>
    public static SqliteAllocationStore Open(string path, StoreSync sync = StoreSync.Full)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            Create(full);
        }

        SqliteConnection? connection = null;
        try
        {
            connection = Connect(full, sync);
            Verify(connection, full);
            return new SqliteAllocationStore(full, connection);
        }
        catch (SqliteException e)
        {
            connection?.Dispose();
            throw new StateStoreException(Describe(full, e), e);
        }
        catch
        {
            connection?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Builds a new store beside the final path and renames it into place, so that a crash during creation
    /// never leaves a half-made file there: whatever sits at the path is verified like any other store
    /// (an empty file is an error, not a new store).
    /// </summary>
    private static void Create(string full)
    {
        var staging = full + ".creating";
        foreach (var leftover in (ReadOnlySpan<string>)[staging, staging + "-wal", staging + "-shm"])
        {
            File.Delete(leftover);
        }

        try
        {
            using (var connection = Connect(staging, StoreSync.Full))
            {
                Execute(connection, $"""
                    PRAGMA application_id = {ApplicationId};
                    PRAGMA user_version = {SchemaVersion};
                    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                    INSERT INTO meta(key, value) VALUES('sequence', '0');
                    CREATE TABLE leases(
                        address BLOB PRIMARY KEY,
                        family INTEGER NOT NULL,
                        pool TEXT NOT NULL,
                        state INTEGER NOT NULL,
                        application TEXT,
                        instance TEXT,
                        preallocated INTEGER NOT NULL,
                        since_ms INTEGER NOT NULL,
                        host BLOB) WITHOUT ROWID;
                    {MissesTable}
                    """);
            }

            File.Move(staging, full);
        }
        catch (SqliteException e)
        {
            throw new StateStoreException(Describe(full, e), e);
        }
    }

    private static SqliteConnection Connect(string file, StoreSync sync)
    {
        // A short busy timeout: a second controller on the same file should fail fast, not hang 30 s.
        var builder = new SqliteConnectionStringBuilder { DataSource = file, Pooling = false, Mode = SqliteOpenMode.ReadWriteCreate, DefaultTimeout = 1 };
        var connection = new SqliteConnection(builder.ToString());
        try
        {
            connection.Open();
            Execute(connection, "PRAGMA busy_timeout = 0");
            Execute(connection, "PRAGMA locking_mode = EXCLUSIVE");
            var mode = ScalarOf(connection, "PRAGMA journal_mode = WAL");
            if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
            {
                throw new StateStoreException($"state store '{file}': could not switch to WAL mode (journal_mode is '{mode}')");
            }

            Execute(connection, sync == StoreSync.Full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");

            // SQLite would checkpoint inside a commit, before we can acknowledge it; Maintain does it after.
            Execute(connection, "PRAGMA wal_autocheckpoint = 0");
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public IReadOnlyList<Lease> LoadLeases()
    {
        try
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT address, family, pool, state, application, instance, preallocated, since_ms, host FROM leases";
            using var reader = command.ExecuteReader();
            var leases = new List<Lease>();
            while (reader.Read())
            {
                var bytes = reader.GetFieldValue<byte[]>(0);
                if (!TryReadAddress(bytes, out var address) || (int)address.Family != reader.GetInt32(1))
                {
                    throw new StateStoreException($"state store '{Location}': lease row has a bad address ({Convert.ToHexString(bytes)})");
                }

                leases.Add(new Lease(
                    address,
                    reader.GetString(2),
                    (LeaseState)reader.GetInt32(3),
                    reader.IsDBNull(4) ? null : reader.GetString(4),
                    reader.IsDBNull(5) ? null : reader.GetString(5),
                    reader.GetInt64(6) != 0,
                    reader.GetInt64(7),
                    reader.IsDBNull(8) ? null : ReadHost(reader.GetFieldValue<byte[]>(8))));
            }

            return leases;
        }
        catch (SqliteException e)
        {
            throw new StateStoreException(Describe(Location, e), e);
        }
    }

    public IReadOnlyList<(long Id, MissRecord Miss)> LoadMisses(long afterId, int limit)
    {
        try
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT id, time_ms, application, instance, address, host, window FROM misses WHERE id > $after ORDER BY id LIMIT $limit";
            command.Parameters.AddWithValue("$after", afterId);
            command.Parameters.AddWithValue("$limit", limit);
            using var reader = command.ExecuteReader();
            var misses = new List<(long, MissRecord)>();
            while (reader.Read())
            {
                var bytes = reader.GetFieldValue<byte[]>(4);
                if (!TryReadAddress(bytes, out var address))
                {
                    throw new StateStoreException($"state store '{Location}': miss row has a bad address ({Convert.ToHexString(bytes)})");
                }

                misses.Add((reader.GetInt64(0), new MissRecord(
                    reader.GetInt64(1),
                    reader.GetString(2),
                    reader.GetString(3),
                    address,
                    reader.IsDBNull(5) ? null : ReadHost(reader.GetFieldValue<byte[]>(5)),
                    reader.IsDBNull(6) ? null : reader.GetString(6))));
            }

            return misses;
        }
        catch (SqliteException e)
        {
            throw new StateStoreException(Describe(Location, e), e);
        }
    }

    /// <summary>
    /// Writes the group through prepared statements on SQLite's own handle: binding spans and integers
    /// allocates nothing, where the ADO.NET layer costs about 1.1 KB per row (a GC pause every few
    /// thousand events, which showed at p99).
    /// </summary>
    public void Commit(ReadOnlySpan<LeaseChange> changes, ReadOnlySpan<MissRecord> misses, long sequence)
    {
        Step(_begin);
        try
        {
            Span<byte> address = stackalloc byte[16];
            Span<byte> hostAddress = stackalloc byte[16];
            foreach (ref readonly var change in changes)
            {
                var lease = change.Lease;
                var length = WriteAddress(lease.Address, address);
                if (change.Removed)
                {
                    Check(raw.sqlite3_bind_blob(_delete, 1, address[..length]));
                    Step(_delete);
                    continue;
                }

                Check(raw.sqlite3_bind_blob(_upsert, 1, address[..length]));
                // A binding stays until replaced: family, pool and application are mostly those of the row
                // before, and each bind is a call through interop (stop 24).
                if ((int)lease.Address.Family != _boundFamily)
                {
                    Check(raw.sqlite3_bind_int64(_upsert, 2, (int)lease.Address.Family));
                    _boundFamily = (int)lease.Address.Family;
                }

                if (!ReferenceEquals(lease.Pool, _boundPool))
                {
                    BindText(_upsert, 3, lease.Pool);
                    _boundPool = lease.Pool;
                }

                Check(raw.sqlite3_bind_int64(_upsert, 4, (int)lease.State));
                if (!ReferenceEquals(lease.Application, _boundApplication))
                {
                    BindText(_upsert, 5, lease.Application);
                    _boundApplication = lease.Application;
                }

                if (change.HasInstance)
                {
                    BindText(_upsert, 6, change.InstanceName); // a string, or characters in the change log
                }
                else
                {
                    Check(raw.sqlite3_bind_null(_upsert, 6));
                }
                Check(raw.sqlite3_bind_int64(_upsert, 7, lease.Preallocated ? 1 : 0));
                Check(raw.sqlite3_bind_int64(_upsert, 8, lease.SinceMs));
                if (lease.Host is { } host)
                {
                    var hostLength = WriteAddress(host, hostAddress);
                    Check(raw.sqlite3_bind_blob(_upsert, 9, hostAddress[..hostLength]));
                }
                else
                {
                    Check(raw.sqlite3_bind_null(_upsert, 9));
                }

                Step(_upsert);
            }

            foreach (var miss in misses)
            {
                Check(raw.sqlite3_bind_int64(_insertMiss, 1, miss.TimeMs));
                BindText(_insertMiss, 2, miss.Application);
                BindText(_insertMiss, 3, miss.Instance);
                Check(raw.sqlite3_bind_blob(_insertMiss, 4, address[..WriteAddress(miss.Address, address)]));
                if (miss.Host is { } host)
                {
                    Check(raw.sqlite3_bind_blob(_insertMiss, 5, hostAddress[..WriteAddress(host, hostAddress)]));
                }
                else
                {
                    Check(raw.sqlite3_bind_null(_insertMiss, 5));
                }

                BindText(_insertMiss, 6, miss.Window);
                Step(_insertMiss);
            }

            Check(raw.sqlite3_bind_int64(_setSequence, 1, sequence));
            Step(_setSequence);
            Step(_commit);
        }
        catch
        {
            raw.sqlite3_step(_rollback);
            raw.sqlite3_reset(_rollback);
            throw;
        }

        CommittedSequence = sequence;
        _commitsSinceCheckpoint++;
    }

    /// <summary>
    /// Copies the write-ahead log into the database often, in small steps: a short log is rewritten from
    /// its start (cheaper to sync than a growing file) and no single checkpoint holds the writer for long.
    /// </summary>
    public bool Maintain(bool idle)
    {
        if (_commitsSinceCheckpoint < (idle ? 8 : 64))
        {
            return false;
        }

        {
            // PASSIVE: copies what it can without waiting; a row comes back, so step until done.
            while (raw.sqlite3_step(_checkpoint) == raw.SQLITE_ROW)
            {
            }

            raw.sqlite3_reset(_checkpoint);
            _commitsSinceCheckpoint = 0;
        }

        return true;
    }

    public void Dispose()
    {
        foreach (var statement in (ReadOnlySpan<sqlite3_stmt>)[_begin, _commit, _rollback, _upsert, _delete, _setSequence, _insertMiss, _checkpoint])
        {
            statement.Dispose();
        }

        _connection.Dispose();
    }

    private static void Verify(SqliteConnection connection, string path)
    {
        var check = ScalarOf(connection, "PRAGMA quick_check");
        if (!string.Equals(check, "ok", StringComparison.Ordinal))
        {
            throw new StateStoreException($"state store '{path}' is damaged (SQLite quick_check: {check}); restore it from a backup or move it aside");
        }

        var applicationId = Convert.ToInt32(ScalarOf(connection, "PRAGMA application_id"), CultureInfo.InvariantCulture);
        var version = Convert.ToInt32(ScalarOf(connection, "PRAGMA user_version"), CultureInfo.InvariantCulture);
        if (applicationId != ApplicationId)
        {
            throw new StateStoreException($"state store '{path}' is an SQLite database but not a ShadowNet store (application_id {applicationId:x})");
        }

        if (version == 1)
        {
            Execute(connection, $"BEGIN IMMEDIATE; {MissesTable} PRAGMA user_version = {SchemaVersion}; COMMIT;");
            version = SchemaVersion;
        }

        if (version != SchemaVersion)
        {
            throw new StateStoreException($"state store '{path}' has schema version {version}; this build reads version {SchemaVersion}");
        }
    }

    private static string Describe(string path, SqliteException e) => e.SqliteErrorCode switch
    {
        26 => $"state store '{path}' is not a database (SQLite: {e.Message}); restore it from a backup or move it aside",
        11 => $"state store '{path}' is damaged (SQLite: {e.Message}); restore it from a backup or move it aside",
        5 or 6 => $"state store '{path}' is in use by another process (SQLite: {e.Message})",
        _ => $"state store '{path}' cannot be used (SQLite error {e.SqliteErrorCode}: {e.Message})",
    };

    /// <summary>Addresses are stored as 4 (IPv4) or 16 (IPv6) big-endian octets.</summary>
    internal static int WriteAddress(Address address, Span<byte> destination)
    {
        if (address.IsIPv6)
        {
            BinaryPrimitives.WriteUInt128BigEndian(destination, address.Value);
            return 16;
        }

        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)address.Value);
        return 4;
    }

    internal static bool TryReadAddress(ReadOnlySpan<byte> bytes, out Address address)
    {
        switch (bytes.Length)
        {
            case 4:
                address = Address.IPv4(BinaryPrimitives.ReadUInt32BigEndian(bytes));
                return true;
            case 16:
                address = Address.IPv6(BinaryPrimitives.ReadUInt128BigEndian(bytes));
                return true;
            default:
                address = default;
                return false;
        }
    }

    private Address ReadHost(byte[] bytes) => TryReadAddress(bytes, out var host)
        ? host
        : throw new StateStoreException($"state store '{Location}': lease row has a bad host address ({Convert.ToHexString(bytes)})");

    private void BindText(sqlite3_stmt statement, int index, string? text)
    {
        if (text is null)
        {
            Check(raw.sqlite3_bind_null(statement, index));
            return;
        }

        BindText(statement, index, text.AsSpan());
    }

    private void BindText(sqlite3_stmt statement, int index, ReadOnlySpan<char> text)
    {
        var needed = Encoding.UTF8.GetMaxByteCount(text.Length);
        if (needed > _utf8.Length)
        {
            _utf8 = new byte[Math.Max(needed, _utf8.Length * 2)];
        }

        var length = Encoding.UTF8.GetBytes(text, _utf8);
        Check(raw.sqlite3_bind_text(statement, index, _utf8.AsSpan(0, length)));
    }

    private void Step(sqlite3_stmt statement)
    {
        var rc = raw.sqlite3_step(statement);
        raw.sqlite3_reset(statement);
        if (rc != SqliteDone)
        {
            Fail(rc);
        }
    }

    private void Check(int rc)
    {
        if (rc != raw.SQLITE_OK)
        {
            Fail(rc);
        }
    }

    [DoesNotReturn]
    private void Fail(int rc) =>
        throw new StateStoreException($"state store '{Location}': SQLite error {rc}: {raw.sqlite3_errmsg(_connection.Handle).utf8_to_string()}");

    private sqlite3_stmt Prepare(string sql)
    {
        var rc = raw.sqlite3_prepare_v2(_connection.Handle, sql, out var statement);
        if (rc != raw.SQLITE_OK)
        {
            Fail(rc);
        }

        return statement;
    }

    private static string? ScalarOf(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToString(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
