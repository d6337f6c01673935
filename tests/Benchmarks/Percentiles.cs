using System.Globalization;

namespace Hybrid.Benchmarks;

/// <summary>Nearest-rank percentiles of a sample, the one summary every benchmark prints.</summary>
internal sealed record Percentiles(int Count, double Min, double P50, double P90, double P99, double Max)
{
    public static Percentiles Of(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return new Percentiles(0, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);
        double Rank(double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
        return new Percentiles(sorted.Length, sorted[0], Rank(0.50), Rank(0.90), Rank(0.99), sorted[^1]);
    }

    /// <summary>"n=… min … p50 … p90 … p99 … max … unit", values scaled by `scale` first.</summary>
    public string Format(string unit, string number = "0.0", double scale = 1) => string.Create(CultureInfo.InvariantCulture,
        $"n={Count} min {(Min * scale).ToString(number, CultureInfo.InvariantCulture)} p50 {(P50 * scale).ToString(number, CultureInfo.InvariantCulture)} " +
        $"p90 {(P90 * scale).ToString(number, CultureInfo.InvariantCulture)} p99 {(P99 * scale).ToString(number, CultureInfo.InvariantCulture)} " +
        $"max {(Max * scale).ToString(number, CultureInfo.InvariantCulture)} {unit}");
}
