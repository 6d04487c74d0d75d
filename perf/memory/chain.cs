// Peak memory of one pass over a 10,000-node ReLU chain on 100 images of 1x28x28 (issue 14): Model.Forward keeps
// every activation for a backward pass; Model.Infer frees each once no later node reads it.
// Run from the repository root, one pass per process (the peak working set is per process):
//   dotnet run perf/memory/chain.cs -- forward [--json FILE]
//   dotnet run perf/memory/chain.cs -- infer [--json FILE]
#:project ../../engine/Perturb.Engine.csproj
using System.Text.Json.Nodes;
using Perturb.Engine.Backends;
using Perturb.Engine;
using Perturb.Engine.Nn;

string mode = args.Length > 0 ? args[0] : "infer";
if (mode is not ("forward" or "infer")) { Console.Error.WriteLine("usage: chain.cs forward|infer [--json FILE]"); return 2; }
string? json = args.Length > 2 && args[1] == "--json" ? args[2] : null;
const int nodes = 10_000, images = 100;
using var be = new CpuBackend();
var g = new GraphBuilder(1, 28, 28);
g.Add("relu0", new ActivationLayer(Activation.Relu), GraphBuilder.Input);
for (int i = 1; i < nodes; i++) g.Add($"relu{i}", new ActivationLayer(Activation.Relu));
using var m = g.Build(be, 1);
m.Eval();
using var x = be.FromArray(new float[images * 784], images, 1, 28, 28);
var sw = System.Diagnostics.Stopwatch.StartNew();
var z = (mode == "infer" ? m.Infer(x) : m.Forward(x)).ToArray();
double peak = System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / 1e9;
Console.WriteLine($"{mode}: {nodes} ReLU nodes, {images} images of 1x28x28: peak working set {peak:F2} GB, {sw.Elapsed.TotalSeconds:F1} s ({z.Length} outputs)");
if (json != null)
    File.WriteAllText(json, new JsonObject { ["bench"] = "memory-chain", ["mode"] = mode, ["nodes"] = nodes, ["images"] = images, ["peak_working_set_gb"] = peak, ["seconds"] = sw.Elapsed.TotalSeconds }.ToJsonString() + "\n");
return 0;
