"""PyTorch 1.13 on the ResNet-18's stride-2 3x3 shapes, forward and backward-data, median of 9.
Usage: torch_conv_s2.py THREADS BATCH [cpu|wall]   (clock: process CPU seconds, the default, or wall seconds)."""
import torch, time, sys
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1])); CLK = time.process_time if (len(sys.argv) < 4 or sys.argv[3] == "cpu") else time.perf_counter
CLKNAME = "cpu" if CLK is time.process_time else "wall"
N=int(sys.argv[2])
shapes=[(64,28,128),(128,14,256),(256,7,512)]
for C,H,K in shapes:
    x=torch.rand(N,C,H,H); w=torch.rand(K,C,3,3)
    y=F.conv2d(x,w,stride=2,padding=1); dy=torch.rand_like(y)
    fl=2*N*K*y.shape[2]*y.shape[3]*C*9
    for name,fn in [("fwd",lambda: F.conv2d(x,w,stride=2,padding=1)),("bwd-data",lambda: torch.nn.grad.conv2d_input(x.shape,w,dy,stride=2,padding=1))]:
        for _ in range(3): fn()
        ts=[]
        for _ in range(9):
            t0=CLK(); fn(); ts.append(CLK()-t0)
        ts.sort(); print(f"{C}->{K} {H}x{H} s2 {name} N={N}: {fl/ts[4]/1e9:.1f} GFLOP/s per {CLKNAME}-s ({ts[4]*1e3:.1f} ms {CLKNAME})")
