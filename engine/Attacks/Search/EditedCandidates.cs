using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

/// <summary>Writes one candidate's edits: (index within the image's C*H*W values, value) pairs, <c>idx.Length</c> of them (-1: none).</summary>
internal delegate void EditWriter(int candidate, Span<float> idx, Span<float> val);

/// <summary>
/// Candidates that are a device-resident image with a few values changed (one-pixel, pixel-saliency), rendered on the
/// device by <see cref="IBackend.ScatterRows"/>. The images are uploaded once, when this is made. Per chunk of
/// candidates only the edits go up, 4 * (1 + 2 * edits) bytes a candidate (its image's row and the (index, value)
/// pairs), and the logits come back, 4 * outputs bytes a candidate: the host never renders or uploads an image. The
/// device buffers are kept between calls and grow only when a call has more candidates than any before, so a
/// generation after the first allocates nothing (the model's memory plan does the same for its activations when the
/// chunk shape repeats). The logits are the same bits as <see cref="SearchAttack.EvaluateLogits"/> gives for the same
/// images, chunking included.
/// </summary>
internal sealed class EditedCandidates : IDisposable
{
    readonly Model _m;
    readonly IBackend _be;
    readonly Tensor _images;
    readonly int _count, _d, _edits;
    Tensor? _src, _idx, _val, _y;
    float[] _srcH = [], _idxH = [], _valH = [];
    int _cap;

    /// <summary>Whether images of <paramref name="d"/> values fit: indices travel as floats, exact below 2^24.</summary>
    public static bool Fits(int d) => d < 1 << 24;

    /// <param name="images">the images, <paramref name="count"/> x C*H*W values (row k: image k)</param>
    public EditedCandidates(Model m, ReadOnlySpan<float> images, int count, int edits)
    {
        _m = m; _be = m.Backend; _count = count; _d = Layer.Product(m.InputShape); _edits = edits;
        _images = _be.FromArray(images[..(count * _d)], count, _d);
    }

    /// <summary>
    /// Logits of <paramref name="count"/> candidates, count x classes, as <see cref="SearchAttack.EvaluateLogits"/>:
    /// candidate q is image <paramref name="image"/>(q) with the edits <paramref name="edit"/>(q, ...) writes.
    /// </summary>
    public float[] Logits(int count, int queryBatch, Func<int, int> image, EditWriter edit)
    {
        int k = _m.NumOutputs, classes = _m.NumClasses, e = _edits;
        queryBatch = Math.Min(queryBatch, SearchAttack.ForwardRows(_m));
        var outp = new float[(long)count * classes];
        Reserve(Math.Min(queryBatch, Math.Max(count, 1)));
        BatchGuard.Run(count, queryBatch, (s0, rows) =>
        {
            int s = (int)s0;
            for (int r = 0; r < rows; r++)
            {
                _srcH[r] = image(s + r);
                edit(s + r, _idxH.AsSpan(r * e, e), _valH.AsSpan(r * e, e));
            }
            var src = _src!.Slice(0, rows); var y = _y!.Slice(0, rows);
            _be.Upload(src, _srcH.AsSpan(0, rows));
            if (e > 0)
            {
                _be.Upload(_idx!.Slice(0, rows), _idxH.AsSpan(0, rows * e));
                _be.Upload(_val!.Slice(0, rows), _valH.AsSpan(0, rows * e));
            }
            _be.ScatterRows(_images, src, _idx!, _val!, y, _count, rows, _d, e);
            var z = _m.Infer(y.Reshape(new[] { rows }.Concat(_m.InputShape).ToArray())).ToArray();
            for (int r = 0; r < rows; r++) Losses.ClassLogits(z, r, k, outp.AsSpan((int)((long)(s + r) * classes), classes));
        }, cleanup: _m.ReleaseActivations, what: "query batch");
        return outp;
    }

    /// <summary>Device and host buffers for at least <paramref name="rows"/> candidates (kept; grown, never shrunk).</summary>
    void Reserve(int rows)
    {
        if (rows <= _cap) return;
        FreeBuffers();
        _cap = rows;
        _src = _be.Allocate(rows);
        _idx = _be.Allocate(rows, _edits);
        _val = _be.Allocate(rows, _edits);
        _y = _be.Allocate(rows, _d);
        _srcH = new float[rows]; _idxH = new float[rows * _edits]; _valH = new float[rows * _edits];
    }

    void FreeBuffers()
    {
        _src?.Dispose(); _idx?.Dispose(); _val?.Dispose(); _y?.Dispose();
        _src = _idx = _val = _y = null;
    }

    public void Dispose()
    {
        FreeBuffers();
        _images.Dispose();
        _m.ReleaseActivations();
    }
}
