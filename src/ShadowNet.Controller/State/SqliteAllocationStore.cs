using System.Globalization;
using Microsoft.Data.Sqlite;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;

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
    private const int SchemaVersion = 1;

    private readonly SqliteConnection _connection;
    private readonly SqliteCommand _upsert;
    private readonly SqliteCommand _delete;
    private readonly SqliteCommand _setSequence;
    private readonly SqliteParameter[] _upsertParameters;
    private readonly SqliteParameter _deleteAddress;
    private readonly SqliteParameter _sequence;
    private readonly SqliteCommand _checkpoint;
    private int _commitsSinceCheckpoint;

    private SqliteAllocationStore(string path, SqliteConnection connection)
    {
        Location = path;
        _connection = connection;
        _upsert = connection.CreateCommand();
        _upsert.CommandText =
            "INSERT INTO leases(address, family, pool, state, application, instance, preallocated, since_ms) " +
            "VALUES($a, $f, $p, $s, $app, $i, $pre, $t) ON CONFLICT(address) DO UPDATE SET family = excluded.family, " +
            "pool = excluded.pool, state = excluded.state, application = excluded.application, instance = excluded.instance, " +
            "preallocated = excluded.preallocated, since_ms = excluded.since_ms";
        _upsertParameters = new[] { "$a", "$f", "$p", "$s", "$app", "$i", "$pre", "$t" }.Select(name => _upsert.Parameters.Add(new SqliteParameter(name, null))).ToArray();
        _delete = connection.CreateCommand();
        _delete.CommandText = "DELETE FROM leases WHERE address = $a";
        _deleteAddress = _delete.Parameters.Add(new SqliteParameter("$a", null));
        _setSequence = connection.CreateCommand();
        _setSequence.CommandText = "UPDATE meta SET value = $v WHERE key = 'sequence'";
        _sequence = _setSequence.Parameters.Add(new SqliteParameter("$v", null));
        _checkpoint = connection.CreateCommand();
        _checkpoint.CommandText = "PRAGMA wal_checkpoint(PASSIVE)";
        CommittedSequence = long.Parse(Scalar("SELECT value FROM meta WHERE key = 'sequence'") ?? "0", CultureInfo.InvariantCulture);
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
        var existed = File.Exists(full) && new FileInfo(full).Length > 0;
        // A short busy timeout: a second controller on the same file should fail fast, not hang 30 s.
        var builder = new SqliteConnectionStringBuilder { DataSource = full, Pooling = false, Mode = SqliteOpenMode.ReadWriteCreate, DefaultTimeout = 1 };
        var connection = new SqliteConnection(builder.ToString());
        try
        {
            connection.Open();
            Execute(connection, "PRAGMA busy_timeout = 0");
            Execute(connection, "PRAGMA locking_mode = EXCLUSIVE");
            var mode = ScalarOf(connection, "PRAGMA journal_mode = WAL");
            if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
            {
                throw new StateStoreException($"state store '{full}': could not switch to WAL mode (journal_mode is '{mode}')");
            }

            Execute(connection, sync == StoreSync.Full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
            // SQLite would checkpoint inside a commit, before we can acknowledge it; Maintain does it after.
            Execute(connection, "PRAGMA wal_autocheckpoint = 0");
            if (existed)
            {
                Verify(connection, full);
            }
            else
            {
                Execute(connection, $"""
                    PRAGMA application_id = {ApplicationId};
                    PRAGMA user_version = {SchemaVersion};
                    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                    INSERT INTO meta(key, value) VALUES('sequence', '0');
                    CREATE TABLE leases(
                        address TEXT PRIMARY KEY,
                        family INTEGER NOT NULL,
                        pool TEXT NOT NULL,
                        state INTEGER NOT NULL,
                        application TEXT,
                        instance TEXT,
                        preallocated INTEGER NOT NULL,
                        since_ms INTEGER NOT NULL) WITHOUT ROWID;
                    """);
            }

            return new SqliteAllocationStore(full, connection);
        }
        catch (SqliteException e)
        {
            connection.Dispose();
            throw new StateStoreException(Describe(full, e), e);
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
            command.CommandText = "SELECT address, family, pool, state, application, instance, preallocated, since_ms FROM leases";
            using var reader = command.ExecuteReader();
            var leases = new List<Lease>();
            while (reader.Read())
            {
                var text = reader.GetString(0);
                if (!Address.TryParse(text, out var address) || (int)address.Family != reader.GetInt32(1))
                {
                    throw new StateStoreException($"state store '{Location}': lease row has a bad address '{text}'");
                }

                leases.Add(new Lease(
                    address,
                    reader.GetString(2),
                    (LeaseState)reader.GetInt32(3),
                    reader.IsDBNull(4) ? null : reader.GetString(4),
                    reader.IsDBNull(5) ? null : reader.GetString(5),
                    reader.GetInt64(6) != 0,
                    reader.GetInt64(7)));
            }

            return leases;
        }
        catch (SqliteException e)
        {
            throw new StateStoreException(Describe(Location, e), e);
        }
    }

    public void Commit(ReadOnlySpan<LeaseChange> changes, long sequence)
    {
        using var transaction = _connection.BeginTransaction();
        _upsert.Transaction = transaction;
        _delete.Transaction = transaction;
        _setSequence.Transaction = transaction;
        foreach (ref readonly var change in changes)
        {
            var lease = change.Lease;
            if (change.Removed)
            {
                _deleteAddress.Value = lease.Address.ToString();
                _delete.ExecuteNonQuery();
                continue;
            }

            _upsertParameters[0].Value = lease.Address.ToString();
            _upsertParameters[1].Value = (int)lease.Address.Family;
            _upsertParameters[2].Value = lease.Pool;
            _upsertParameters[3].Value = (int)lease.State;
            _upsertParameters[4].Value = (object?)lease.Application ?? DBNull.Value;
            _upsertParameters[5].Value = (object?)lease.Instance ?? DBNull.Value;
            _upsertParameters[6].Value = lease.Preallocated ? 1 : 0;
            _upsertParameters[7].Value = lease.SinceMs;
            _upsert.ExecuteNonQuery();
        }

        _sequence.Value = sequence.ToString(CultureInfo.InvariantCulture);
        _setSequence.ExecuteNonQuery();
        transaction.Commit();
        CommittedSequence = sequence;
        _commitsSinceCheckpoint++;
    }

    /// <summary>
    /// Copies the write-ahead log into the database often, in small steps: a short log is rewritten from
    /// its start (cheaper to sync than a growing file) and no single checkpoint holds the writer for long.
    /// </summary>
    public void Maintain(bool idle)
    {
        if (_commitsSinceCheckpoint >= (idle ? 8 : 64))
        {
            _checkpoint.ExecuteNonQuery();
            _commitsSinceCheckpoint = 0;
        }
    }

    public void Dispose()
    {
        _upsert.Dispose();
        _delete.Dispose();
        _setSequence.Dispose();
        _checkpoint.Dispose();
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

    private string? Scalar(string sql) => ScalarOf(_connection, sql);

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
