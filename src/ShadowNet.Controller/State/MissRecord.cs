using ShadowNet.Addressing;

namespace ShadowNet.Controller.State;

/// <summary>
/// A create that found no pre-allocation ("unexpected scaling, no pre-allocation"): what the forecaster
/// got wrong, kept for retraining with the metric window the controller had at that moment.
/// </summary>
/// <param name="TimeMs">Unix milliseconds of the create.</param>
/// <param name="Application">The application that scaled.</param>
/// <param name="Instance">The instance created.</param>
/// <param name="Address">The dynamic address it got instead.</param>
/// <param name="Host">The hypervisor named in the create, if any.</param>
/// <param name="Window">The application's recent metric samples as JSON (null when none were reported).</param>
public sealed record MissRecord(long TimeMs, string Application, string Instance, Address Address, Address? Host, string? Window);
