using Microsoft.Data.Sqlite;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.State;
using ShadowNet.Controller.Tests.Support;

namespace ShadowNet.Controller.Tests.State;

public class SqliteAllocationStoreTests
{
    [Fact]
    public void GarbageFileIsAStartupErrorNamingTheFile()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        File.WriteAllBytes(path, [.. Enumerable.Range(0, 8192).Select(i => (byte)(i * 31))]);
        var error = Assert.Throws<StateStoreException>(() => SqliteAllocationStore.Open(path));
        Assert.StartsWith($"state store '{path}' is not a database", error.Message, StringComparison.Ordinal);
        Assert.Equal(8192, new FileInfo(path).Length);
    }

    [Fact]
    public async Task TruncatedStoreIsAStartupErrorNamingTheFile()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        await using (var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(path)))
        {
            await Task.WhenAll(Enumerable.Range(0, 3000).Select(i => allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv6).AsTask()));
        }

        SqliteConnection.ClearAllPools();
        var length = new FileInfo(path).Length;
        Assert.True(length > 64 * 1024, $"store is only {length} bytes: the WAL was not checkpointed");
        using (var file = new FileStream(path, FileMode.Open))
        {
            file.SetLength(length / 2);
        }

        var error = Assert.ThrowsAny<StateStoreException>(() =>
        {
            using var store = SqliteAllocationStore.Open(path);
            store.LoadLeases();
        });
        Assert.Contains($"state store '{path}' is damaged", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyFileIsAStartupErrorNotANewStore()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        File.WriteAllBytes(path, []);
        var error = Assert.Throws<StateStoreException>(() => SqliteAllocationStore.Open(path));
        Assert.Equal($"state store '{path}' is an SQLite database but not a ShadowNet store (application_id 0)", error.Message);
    }

    [Fact]
    public void NewStoreIsCreatedAsideAndRenamedIntoPlace()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        File.WriteAllBytes(path + ".creating", [1, 2, 3]);
        using (SqliteAllocationStore.Open(path))
        {
        }

        Assert.False(File.Exists(path + ".creating"));
        using var reopened = SqliteAllocationStore.Open(path);
        Assert.Empty(reopened.LoadLeases());
    }

    [Fact]
    public void ForeignSqliteDatabaseIsRefused()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("other.db");
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE t(x INTEGER); INSERT INTO t VALUES(1);";
            command.ExecuteNonQuery();
        }

        var error = Assert.Throws<StateStoreException>(() => SqliteAllocationStore.Open(path));
        Assert.Equal($"state store '{path}' is an SQLite database but not a ShadowNet store (application_id 0)", error.Message);
    }

    [Fact]
    public void SecondProcessOnTheSameStoreIsRefused()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        using var first = SqliteAllocationStore.Open(path);
        first.Commit([], [], 1);
        var error = Assert.Throws<StateStoreException>(() => SqliteAllocationStore.Open(path));
        Assert.StartsWith($"state store '{path}' is in use by another process", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CommitWritesUpsertsAndDeletesInOrder()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        var a = new Lease(Address.Parse("10.1.0.2"), "shadow-v4", LeaseState.Reserved, "db", null, false, 1, Address.Parse("2001:db8::77"));
        var b = new Lease(Address.Parse("2001:db8:1::1"), "shadow-v6", LeaseState.Reserved, "db", "db-1", false, 2);
        using (var store = SqliteAllocationStore.Open(path))
        {
            store.Commit([new(a, false), new(b, false), new(a with { State = LeaseState.Assigned, Instance = "db-0" }, false), new(b, true)], [], 7);
        }

        using var reopened = SqliteAllocationStore.Open(path);
        Assert.Equal(7, reopened.CommittedSequence);
        Assert.Equal([a with { State = LeaseState.Assigned, Instance = "db-0" }], reopened.LoadLeases());
    }

    [Fact]
    public void RowsThatShareOrChangeFamilyPoolAndApplicationAreStoredAsGiven()
    {
        // The upsert rebinds family, pool and application only when they differ from the row before
        // (by reference): every mix, across commits too, must still be stored as given.
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        var web = new string("web".AsSpan()); // equal to "web" below, another object
        Lease[] leases =
        [
            new(Address.Parse("10.1.0.2"), "shadow-v4", LeaseState.Reserved, "db", null, false, 1),
            new(Address.Parse("10.1.0.3"), "shadow-v4", LeaseState.Reserved, "db", null, false, 2),
            new(Address.Parse("10.1.0.4"), "shadow-v4", LeaseState.Reserved, null, null, false, 3),
            new(Address.Parse("2001:db8:1::1"), "shadow-v6", LeaseState.Assigned, "web", "web-1", true, 4),
            new(Address.Parse("10.9.0.1"), "dynamic-v4", LeaseState.Assigned, web, "web-2", false, 5),
            new(Address.Parse("10.1.0.5"), "shadow-v4", LeaseState.Reserved, "db", null, false, 6),
        ];
        using (var store = SqliteAllocationStore.Open(path))
        {
            store.Commit([.. leases[..3].Select(l => new LeaseChange(l, false))], [], 1);
            store.Commit([.. leases[3..].Select(l => new LeaseChange(l, false))], [], 2);
        }

        using var reopened = SqliteAllocationStore.Open(path);
        Assert.Equal(leases.OrderBy(l => l.SinceMs), reopened.LoadLeases().OrderBy(l => l.SinceMs));
    }

    [Fact]
    public void MissRecordsAreStoredWithTheGroupAndReadBackInOrder()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        var first = new MissRecord(1_700_000_000_000, "db", "db-1", Address.Parse("10.9.0.2"), Address.Parse("192.0.2.1"), """{"samples":[{"timeMs":1,"cpu":0.5}]}""");
        var second = new MissRecord(1_700_000_000_500, "web", "web-9", Address.Parse("2001:db8:9::2"), null, null);
        using (var store = SqliteAllocationStore.Open(path))
        {
            store.Commit([], [first, second], 1);
        }

        using var reopened = SqliteAllocationStore.Open(path);
        var misses = reopened.LoadMisses(0, 10);
        Assert.Equal([first, second], misses.Select(m => m.Miss));
        Assert.Equal([second], reopened.LoadMisses(misses[0].Id, 10).Select(m => m.Miss));
    }

    [Fact]
    public void VersionOneStoreIsUpgradedInPlaceKeepingItsLeases()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        var lease = new Lease(Address.Parse("10.1.0.2"), "shadow-v4", LeaseState.Assigned, "db", "db-0", true, 1);
        using (var store = SqliteAllocationStore.Open(path))
        {
            store.Commit([new(lease, false)], [], 1);
        }

        // What a version 1 build left: no misses table.
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=false"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "DROP TABLE misses; PRAGMA user_version = 1;";
            command.ExecuteNonQuery();
        }

        using var upgraded = SqliteAllocationStore.Open(path);
        Assert.Equal([lease], upgraded.LoadLeases());
        upgraded.Commit([], [new MissRecord(5, "db", "db-1", Address.Parse("10.9.0.2"), null, null)], 2);
        Assert.Single(upgraded.LoadMisses(0, 10));
    }
}
