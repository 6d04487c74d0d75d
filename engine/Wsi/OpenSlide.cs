using System.Runtime.InteropServices;

namespace Perturb.Engine.Wsi;

/// <summary>
/// P/Invoke bindings to OpenSlide's C API in Debian's libopenslide0 (<c>libopenslide.so.0</c>). Only the calls the
/// slide reader needs; strings are UTF-8, images are premultiplied ARGB uint32 (read_region takes level-0 coordinates).
/// </summary>
static partial class OpenSlideNative
{
    public const string Lib = "libopenslide.so.0";

    [LibraryImport(Lib, EntryPoint = "openslide_detect_vendor", StringMarshalling = StringMarshalling.Utf8)]
    public static partial IntPtr DetectVendor(string filename);

    [LibraryImport(Lib, EntryPoint = "openslide_open", StringMarshalling = StringMarshalling.Utf8)]
    public static partial IntPtr Open(string filename);

    [LibraryImport(Lib, EntryPoint = "openslide_get_error")]
    public static partial IntPtr GetError(IntPtr osr);

    [LibraryImport(Lib, EntryPoint = "openslide_get_level_count")]
    public static partial int GetLevelCount(IntPtr osr);

    [LibraryImport(Lib, EntryPoint = "openslide_get_level_dimensions")]
    public static partial void GetLevelDimensions(IntPtr osr, int level, out long w, out long h);

    [LibraryImport(Lib, EntryPoint = "openslide_get_level_downsample")]
    public static partial double GetLevelDownsample(IntPtr osr, int level);

    [LibraryImport(Lib, EntryPoint = "openslide_read_region")]
    public static unsafe partial void ReadRegion(IntPtr osr, uint* dest, long x, long y, int level, long w, long h);

    [LibraryImport(Lib, EntryPoint = "openslide_close")]
    public static partial void Close(IntPtr osr);

    static bool? _available;

    /// <summary>Whether libopenslide.so.0 can be loaded on this machine.</summary>
    public static bool Available
    {
        get
        {
            if (_available is { } a) return a;
            bool ok = NativeLibrary.TryLoad(Lib, typeof(OpenSlideNative).Assembly, null, out var h);
            if (ok) NativeLibrary.Free(h);
            _available = ok;
            return ok;
        }
    }

    public static string? Str(IntPtr p) => p == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(p);
}
